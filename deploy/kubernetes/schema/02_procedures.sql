-- The app's only way into the data. SQL SECURITY DEFINER lets an account that
-- holds nothing but EXECUTE run them. MySQL has no CREATE OR REPLACE PROCEDURE,
-- hence DROP + CREATE (04 grants EXECUTE on the database, which survives it).

DELIMITER //

-- record_hit, the one-hit procedure of earlier releases, is gone: the app
-- sends every hit through record_hits now.
DROP PROCEDURE IF EXISTS record_hit //

DROP PROCEDURE IF EXISTS record_hits //
CREATE PROCEDURE record_hits(IN p_hits JSON)
  MODIFIES SQL DATA
  SQL SECURITY DEFINER
  COMMENT 'Counts and logs a batch of hits, once per request id; returns how many were new'
BEGIN
  DECLARE v_elements INT UNSIGNED;
  DECLARE v_valid INT UNSIGNED;
  DECLARE v_recorded INT UNSIGNED DEFAULT 0;
  DECLARE v_slot TINYINT UNSIGNED;
  -- Roll back the whole batch on any error, including lock-wait timeouts
  -- (1205), which on their own roll back only the statement.
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    ROLLBACK;
    RESIGNAL;
  END;

  -- JSON_VALID first: MariaDB's JSON is text, and JSON_TYPE of bad text is NULL.
  IF p_hits IS NULL OR NOT JSON_VALID(p_hits) OR JSON_TYPE(p_hits) <> 'ARRAY' THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'record_hits: the argument must be a JSON array';
  END IF;
  -- Every element is checked before anything is written: INSERT IGNORE below
  -- would turn a bad value into a warning and half a batch.
  SET v_elements = JSON_LENGTH(p_hits);
  SELECT COUNT(*) INTO v_valid
    FROM JSON_TABLE(p_hits, '$[*]' COLUMNS (
           request_id  VARCHAR(64) PATH '$.request_id',
           client_ip   VARCHAR(64) PATH '$.client_ip',
           internal_ip VARCHAR(64) PATH '$.internal_ip')) AS hit
   -- Binary collation: the id check must not let 'A-F' through.
   WHERE CONVERT(hit.request_id USING ascii) COLLATE ascii_bin REGEXP '^[0-9a-f]{32}$'
     AND (IS_IPV4(hit.client_ip) OR IS_IPV6(hit.client_ip))
     AND (IS_IPV4(hit.internal_ip) OR IS_IPV6(hit.internal_ip));
  IF v_valid <> v_elements THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'record_hits: invalid element';
  END IF;

  IF v_elements > 0 THEN
    -- The slot is chosen once: RAND() in the WHERE clause would run per row.
    SET v_slot = FLOOR(RAND() * 64);  -- the 64 rows 01_schema.sql creates
    START TRANSACTION;
    -- A request id already logged (a retry, in this batch or an earlier one)
    -- is skipped, and only what was inserted is counted. Every row of the
    -- batch gets the time it was recorded, in UTC.
    INSERT IGNORE INTO access_log (request_id, client_ip, accessed_at, internal_ip)
      SELECT hit.request_id, hit.client_ip, UTC_TIMESTAMP(6), hit.internal_ip
        FROM JSON_TABLE(p_hits, '$[*]' COLUMNS (
               request_id  CHAR(32)    PATH '$.request_id',
               client_ip   VARCHAR(45) PATH '$.client_ip',
               internal_ip VARCHAR(45) PATH '$.internal_ip')) AS hit;
    SET v_recorded = ROW_COUNT();
    IF v_recorded > 0 THEN
      UPDATE hit_counter SET hits = hits + v_recorded WHERE slot = v_slot;
    END IF;
    COMMIT;
  END IF;
  SELECT v_recorded AS recorded;
END //

-- Reads are answered by the writable primary only, so a client reads its own
-- hits; in a Group Replication group that is the primary of a group that
-- holds a majority. Any other member refuses with 1290, the error a
-- read-only member gives a write: the app then looks for the primary.
DROP PROCEDURE IF EXISTS assert_primary //
CREATE PROCEDURE assert_primary()
  READS SQL DATA
  SQL SECURITY DEFINER
  COMMENT 'Refuses with 1290 unless this member is the writable primary'
BEGIN
  DECLARE v_members INT UNSIGNED DEFAULT 0;
  DECLARE v_online INT UNSIGNED DEFAULT 0;
  DECLARE v_self_primary INT UNSIGNED DEFAULT 0;

  IF @@global.read_only THEN
    SIGNAL SQLSTATE 'HY000'
      SET MYSQL_ERRNO = 1290, MESSAGE_TEXT = 'this member is read-only: not the primary';
  END IF;
  -- Only MySQL with the group's plugin running has the group's table (and
  -- MariaDB, which has neither, refuses @@server_uuid in a procedure).
  IF EXISTS (SELECT 1 FROM information_schema.PLUGINS
              WHERE PLUGIN_NAME = 'group_replication' AND PLUGIN_STATUS = 'ACTIVE') THEN
    SELECT COUNT(*),
           COALESCE(SUM(m.MEMBER_STATE = 'ONLINE'), 0),
           COALESCE(SUM(m.MEMBER_ID = v.VARIABLE_VALUE AND m.MEMBER_STATE = 'ONLINE'
                        AND m.MEMBER_ROLE = 'PRIMARY'), 0)
      INTO v_members, v_online, v_self_primary
      FROM performance_schema.replication_group_members AS m
      JOIN performance_schema.global_variables AS v ON v.VARIABLE_NAME = 'server_uuid';
    -- A primary cut off from the majority would block writes until it is
    -- expelled: it is no primary to read from or write to.
    IF v_self_primary = 0 OR v_online * 2 <= v_members THEN
      SIGNAL SQLSTATE 'HY000'
        SET MYSQL_ERRNO = 1290, MESSAGE_TEXT = 'this member is not the primary of a group with a majority';
    END IF;
  END IF;
END //

DROP PROCEDURE IF EXISTS read_hits //
CREATE PROCEDURE read_hits()
  READS SQL DATA
  SQL SECURITY DEFINER
  COMMENT 'The global counter: the sum of the slots'
BEGIN
  CALL assert_primary();
  -- The view owns the query, so the mysql client and the app agree.
  SELECT hits FROM hit_total;
END //

DROP PROCEDURE IF EXISTS check_ready //
CREATE PROCEDURE check_ready()
  READS SQL DATA
  SQL SECURITY DEFINER
  COMMENT '1 when every procedure the app calls exists, else 0; 1290 unless the primary'
BEGIN
  -- The app also asks this to find the primary.
  CALL assert_primary();
  -- The list, and so its length, lives here only.
  SELECT COUNT(*) = 3 AS ready
    FROM information_schema.ROUTINES
   WHERE ROUTINE_SCHEMA = DATABASE()
     AND ROUTINE_TYPE = 'PROCEDURE'
     AND ROUTINE_NAME IN ('record_hits', 'read_hits', 'assert_primary');
END //

-- Retention, for an administrator (by hand or on a schedule): deletes the
-- access_log rows older than p_before, p_chunk rows per transaction, so no
-- lock is held for long and replication sees small transactions. Each chunk
-- adds what it deleted to access_log_purged in the same transaction, so the
-- counter still equals rows + rows_purged at every commit. SQL SECURITY
-- INVOKER: the app's account may EXECUTE it but holds no DELETE, so it fails.
DROP PROCEDURE IF EXISTS purge_access_log //
CREATE PROCEDURE purge_access_log(IN p_before DATETIME(6), IN p_chunk INT UNSIGNED)
  MODIFIES SQL DATA
  SQL SECURITY INVOKER
  COMMENT 'Deletes access_log rows older than p_before (UTC) in chunks; returns how many'
BEGIN
  DECLARE v_deleted BIGINT UNSIGNED DEFAULT 0;
  DECLARE v_chunk_rows INT UNSIGNED;
  -- A failed chunk is rolled back whole: a lock-wait timeout (1205) rolls
  -- back only its statement, and would leave the chunk's DELETE open for the
  -- session's next commit, uncounted in access_log_purged.
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    ROLLBACK;
    RESIGNAL;
  END;

  IF p_before IS NULL OR p_before > UTC_TIMESTAMP(6) THEN
    SIGNAL SQLSTATE '45000'
      SET MESSAGE_TEXT = 'purge_access_log: p_before must be a UTC time in the past';
  END IF;
  IF p_chunk IS NULL OR p_chunk < 1 OR p_chunk > 100000 THEN
    SIGNAL SQLSTATE '45000'
      SET MESSAGE_TEXT = 'purge_access_log: p_chunk must be 1 to 100000 rows';
  END IF;

  REPEAT
    -- No gap locks: hits keep being inserted while old rows go.
    SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    START TRANSACTION;
    DELETE FROM access_log
     WHERE accessed_at < p_before
     ORDER BY accessed_at
     LIMIT p_chunk;
    SET v_chunk_rows = ROW_COUNT();
    IF v_chunk_rows > 0 THEN
      UPDATE access_log_purged
         SET rows_purged = rows_purged + v_chunk_rows,
             last_purge_at = UTC_TIMESTAMP(6),
             last_cutoff = p_before
       WHERE id = 1;
    END IF;
    COMMIT;
    SET v_deleted = v_deleted + v_chunk_rows;
  UNTIL v_chunk_rows < p_chunk END REPEAT;
  SELECT v_deleted AS purged;
END //

DELIMITER ;
