-- Views for reading the logs with the mysql client (as an administrator; the
-- app account cannot read them). See the README for example queries.

CREATE OR REPLACE VIEW latest_accesses AS
  SELECT id, accessed_at, client_ip, internal_ip, request_id
    FROM access_log
   ORDER BY id DESC
   LIMIT 100;

CREATE OR REPLACE VIEW hits_per_instance AS
  SELECT internal_ip, COUNT(*) AS hits,
         MIN(accessed_at) AS first_access, MAX(accessed_at) AS last_access
    FROM access_log
   GROUP BY internal_ip;

CREATE OR REPLACE VIEW hits_per_client AS
  SELECT client_ip, COUNT(*) AS hits,
         MIN(accessed_at) AS first_access, MAX(accessed_at) AS last_access
    FROM access_log
   GROUP BY client_ip;

CREATE OR REPLACE VIEW hit_total AS
  SELECT CAST(COALESCE(SUM(hits), 0) AS UNSIGNED) AS hits FROM hit_counter;

-- The books after any purge: consistent is 1 when the counter equals the
-- rows kept plus the rows purge_access_log deleted.
CREATE OR REPLACE VIEW log_audit AS
  SELECT c.hits AS counter, r.rows_kept, p.rows_purged,
         c.hits = r.rows_kept + p.rows_purged AS consistent
    FROM hit_total AS c
   CROSS JOIN (SELECT COUNT(*) AS rows_kept FROM access_log) AS r
   CROSS JOIN (SELECT rows_purged FROM access_log_purged WHERE id = 1) AS p;
