-- The app's only way into the data. SQL SECURITY DEFINER lets an account that
-- holds nothing but EXECUTE run them. MySQL has no CREATE OR REPLACE PROCEDURE,
-- hence DROP + CREATE (04 grants EXECUTE on the database, which survives it).

DELIMITER //

DROP PROCEDURE IF EXISTS record_hit //
CREATE PROCEDURE record_hit(
  -- Binary collation: the id check below must not let 'A-F' through.
  IN p_request_id  CHAR(32) CHARACTER SET ascii COLLATE ascii_bin,
  IN p_client_ip   VARCHAR(45),
  IN p_internal_ip VARCHAR(45),
  IN p_slot        TINYINT UNSIGNED
)
  MODIFIES SQL DATA
  SQL SECURITY DEFINER
  COMMENT 'Counts one hit and logs it, once per request id'
BEGIN
  DECLARE already_counted BOOLEAN DEFAULT FALSE;
  -- A retried request (same id) is answered but not counted again.
  DECLARE CONTINUE HANDLER FOR 1062 SET already_counted = TRUE;
  -- Roll back the whole transaction on any error, including lock-wait
  -- timeouts (1205), which on their own roll back only the statement.
  DECLARE EXIT HANDLER FOR SQLEXCEPTION
  BEGIN
    ROLLBACK;
    RESIGNAL;
  END;

  IF p_request_id IS NULL OR p_request_id NOT REGEXP '^[0-9a-f]{32}$'
     OR NOT (IS_IPV4(p_client_ip) OR IS_IPV6(p_client_ip))
     OR NOT (IS_IPV4(p_internal_ip) OR IS_IPV6(p_internal_ip))
     OR p_slot IS NULL THEN
    SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'record_hit: invalid argument';
  END IF;

  START TRANSACTION;
  INSERT INTO access_log (request_id, client_ip, accessed_at, internal_ip)
    VALUES (p_request_id, p_client_ip, UTC_TIMESTAMP(6), p_internal_ip);
  IF NOT already_counted THEN
    UPDATE hit_counter SET hits = hits + 1 WHERE slot = p_slot % 64;
  END IF;
  COMMIT;
END //

DROP PROCEDURE IF EXISTS read_hits //
CREATE PROCEDURE read_hits()
  READS SQL DATA
  SQL SECURITY DEFINER
  COMMENT 'The global counter: the sum of the slots'
BEGIN
  SELECT CAST(COALESCE(SUM(hits), 0) AS UNSIGNED) AS hits FROM hit_counter;
END //

DROP PROCEDURE IF EXISTS check_ready //
CREATE PROCEDURE check_ready()
  READS SQL DATA
  SQL SECURITY DEFINER
  COMMENT 'How many of the procedures the app calls exist (2 when ready)'
BEGIN
  SELECT COUNT(*) AS procedures
    FROM information_schema.ROUTINES
   WHERE ROUTINE_SCHEMA = DATABASE()
     AND ROUTINE_TYPE = 'PROCEDURE'
     AND ROUTINE_NAME IN ('record_hit', 'read_hits');
END //

DELIMITER ;
