-- Converges one lab node: the lab superuser, the template database with the sample
-- schema and the sample database.  Run by the lab role with psql as the OS user that
-- owns the instance, connected to the database "postgres", with these variables:
--   lab_user        role to create (LOGIN SUPERUSER; its password is set separately)
--   lab_db          sample database
--   template_db     template database with the sample schema
--   schema_file     path of the sample schema script
--   schema_version  checksum of that script; the template is rebuilt when it differs
-- Every change is reported by a line starting with "CHANGED:", which the role uses to
-- report changed=true; a second run prints nothing.
\set ON_ERROR_STOP on
\set template_build_db :template_db '_build'
\set template_comment 'dany.slony lab template, schema ' :schema_version

-- The lab superuser.
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'lab_user') AS role_missing,
       EXISTS (SELECT 1 FROM pg_roles
               WHERE rolname = :'lab_user' AND NOT (rolsuper AND rolcanlogin)) AS role_weak
\gset
\if :role_missing
  CREATE ROLE :"lab_user" LOGIN SUPERUSER;
  \echo CHANGED: created role :lab_user
\elif :role_weak
  ALTER ROLE :"lab_user" LOGIN SUPERUSER;
  \echo CHANGED: made role :lab_user a login superuser
\endif

-- The template: built under a temporary name and renamed once complete, so that an
-- interrupted run never leaves a half-loaded template behind.  Rebuilt when the schema
-- script changed (its checksum is kept in the database comment).
SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'template_db') AS template_missing,
       EXISTS (SELECT 1 FROM pg_database d
               WHERE d.datname = :'template_db'
                 AND shobj_description(d.oid, 'pg_database') IS DISTINCT FROM :'template_comment')
         AS template_outdated
\gset
\if :template_outdated
  ALTER DATABASE :"template_db" IS_TEMPLATE false;
  DROP DATABASE :"template_db" WITH (FORCE);
  \echo CHANGED: dropped outdated template :template_db
  \set template_missing true
\endif
\if :template_missing
  DROP DATABASE IF EXISTS :"template_build_db" WITH (FORCE);
  CREATE DATABASE :"template_build_db" OWNER :"lab_user" TEMPLATE template0;
  \connect :template_build_db
  SET ROLE :"lab_user";
  \i :schema_file
  RESET ROLE;
  \connect postgres
  ALTER DATABASE :"template_build_db" RENAME TO :"template_db";
  COMMENT ON DATABASE :"template_db" IS :'template_comment';
  ALTER DATABASE :"template_db" IS_TEMPLATE true;
  \echo CHANGED: created template :template_db
\endif

-- The sample database.
SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'lab_db') AS db_missing
\gset
\if :db_missing
  CREATE DATABASE :"lab_db" OWNER :"lab_user" TEMPLATE :"template_db";
  \echo CHANGED: created database :lab_db
\endif
