-- The app's account, @app_user@'%' (default webcluster_app, the app's
-- DB_USER default): EXECUTE on this database's
-- procedures and nothing else, so a direct SELECT/INSERT/UPDATE/DELETE on a
-- table or view is denied. The grant is on the database, not per procedure:
-- 02 re-creates the procedures, which drops routine grants, and the running
-- app would be refused until they were restored.
-- The caller sets the password first, e.g.  SET @app_password = '...';
-- and may name the account:  SET @app_user = '...';
-- (scripts/apply-sql.sh does both). Re-applying also re-sets the password.

DELIMITER //

DROP PROCEDURE IF EXISTS setup_app_account //
-- INVOKER: during an apply the app could call this too; it must get nothing.
CREATE PROCEDURE setup_app_account()
  MODIFIES SQL DATA
  SQL SECURITY INVOKER
BEGIN
  DECLARE app_user VARCHAR(64) DEFAULT COALESCE(NULLIF(@app_user, ''), 'webcluster_app');
  DECLARE account VARCHAR(100);

  -- Spliced into SQL below: a plain name only (MySQL's limit is 32).
  IF app_user NOT REGEXP '^[A-Za-z0-9_]{1,32}$' THEN
    SIGNAL SQLSTATE '45000'
      SET MESSAGE_TEXT = '@app_user must be 1-32 letters, digits or underscores';
  END IF;
  SET account = CONCAT('''', app_user, '''@''%''');

  IF COALESCE(@app_password, '') = '' THEN
    SIGNAL SQLSTATE '45000'
      SET MESSAGE_TEXT = 'Set @app_password before applying 04_app_account.sql';
  END IF;

  SET @setup_sql = CONCAT('CREATE USER IF NOT EXISTS ', account,
                          ' IDENTIFIED BY ', QUOTE(@app_password));
  PREPARE stmt FROM @setup_sql;
  EXECUTE stmt;
  SET @setup_sql = CONCAT('ALTER USER ', account, ' IDENTIFIED BY ', QUOTE(@app_password));
  PREPARE stmt FROM @setup_sql;
  EXECUTE stmt;

  -- Whatever else was granted goes; REVOKE and GRANT run back to back.
  SET @setup_sql = CONCAT('REVOKE ALL PRIVILEGES, GRANT OPTION FROM ', account);
  PREPARE stmt FROM @setup_sql;
  EXECUTE stmt;
  SET @setup_sql = CONCAT('GRANT EXECUTE ON `', DATABASE(), '`.* TO ', account);
  PREPARE stmt FROM @setup_sql;
  EXECUTE stmt;

  DEALLOCATE PREPARE stmt;
  SET @setup_sql = NULL;
END //

DELIMITER ;

CALL setup_app_account();
DROP PROCEDURE setup_app_account;
