-- The app's account 'webcluster_app'@'%': EXECUTE on the app's procedures and
-- nothing else, so a direct SELECT/INSERT/UPDATE/DELETE on a table is denied.
-- The caller sets the password first, e.g.  SET @app_password = '...';
-- (scripts/apply-sql.sh does this). Re-applying also re-sets the password.

DELIMITER //

DROP PROCEDURE IF EXISTS setup_app_account //
CREATE PROCEDURE setup_app_account()
  MODIFIES SQL DATA
BEGIN
  DECLARE account VARCHAR(64) DEFAULT '''webcluster_app''@''%''';

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

  -- Whatever an older version granted goes; then EXECUTE per procedure.
  SET @setup_sql = CONCAT('REVOKE ALL PRIVILEGES, GRANT OPTION FROM ', account);
  PREPARE stmt FROM @setup_sql;
  EXECUTE stmt;
  SET @setup_sql = CONCAT('GRANT EXECUTE ON PROCEDURE `', DATABASE(), '`.`record_hit` TO ', account);
  PREPARE stmt FROM @setup_sql;
  EXECUTE stmt;
  SET @setup_sql = CONCAT('GRANT EXECUTE ON PROCEDURE `', DATABASE(), '`.`read_hits` TO ', account);
  PREPARE stmt FROM @setup_sql;
  EXECUTE stmt;
  SET @setup_sql = CONCAT('GRANT EXECUTE ON PROCEDURE `', DATABASE(), '`.`check_ready` TO ', account);
  PREPARE stmt FROM @setup_sql;
  EXECUTE stmt;

  DEALLOCATE PREPARE stmt;
  SET @setup_sql = NULL;
END //

DELIMITER ;

CALL setup_app_account();
DROP PROCEDURE setup_app_account;
