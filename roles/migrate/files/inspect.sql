-- What the migrate role needs to know about one database, as one JSON document.
-- Read-only. The Slony library path is looked up with pg_stat_file(..., missing_ok),
-- which needs a superuser (Slony itself needs one too).
select json_build_object(
  'server_version', current_setting('server_version'),
  'server_version_num', current_setting('server_version_num')::int,
  'user', current_user,
  'superuser', (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user),
  'encoding', pg_catalog.pg_encoding_to_char(d.encoding),
  'collate', d.datcollate,
  'ctype', d.datctype,
  'libdir', case when (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user)
                 then (select c.setting from pg_catalog.pg_config c where c.name = 'PKGLIBDIR') end,
  'slony_libraries', case when (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user)
    then (select coalesce(json_agg(f.name order by f.name), '[]'::json)
            from pg_catalog.pg_ls_dir((select c.setting from pg_catalog.pg_config c where c.name = 'PKGLIBDIR')) as f(name)
           where f.name like 'slony1\_funcs.%.so') end,
  -- Slony cluster schemas: a schema that holds Slony's sl_node and sl_set tables.
  'slony_schemas', (select coalesce(json_agg(n.nspname order by n.nspname), '[]'::json)
                      from pg_catalog.pg_namespace n
                     where exists (select 1 from pg_catalog.pg_class c
                                    where c.relnamespace = n.oid and c.relname = 'sl_node' and c.relkind = 'r')
                       and exists (select 1 from pg_catalog.pg_class c
                                    where c.relnamespace = n.oid and c.relname = 'sl_set' and c.relkind = 'r')),
  -- Triggers named like Slony's (_<cluster>_logtrigger, _<cluster>_denyaccess, ...), by name.
  'slony_triggers', (select coalesce(json_agg(distinct t.tgname), '[]'::json)
                       from pg_catalog.pg_trigger t
                      where not t.tgisinternal and t.tgname like '\_%'),
  'schemas', (select coalesce(json_agg(n.nspname order by n.nspname), '[]'::json)
                from pg_catalog.pg_namespace n
               where n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
                 and not exists (select 1 from pg_catalog.pg_class c
                                  where c.relnamespace = n.oid and c.relname = 'sl_node' and c.relkind = 'r')
                 and not exists (select 1 from pg_catalog.pg_extension e where e.extnamespace = n.oid and n.nspname <> 'public')),
  -- Ordinary tables (partitions included, partitioned parents are not replicated by Slony)
  -- with the key Slony would use: the primary key, else a valid, immediate, non-partial
  -- unique index without expressions whose columns are all NOT NULL.
  'tables', (select coalesce(json_agg(json_build_object(
                 'name', pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname),
                 'schema', n.nspname,
                 'primary', (select i.indisprimary from pg_catalog.pg_index i where i.indrelid = c.oid and i.indisprimary),
                 'key', coalesce(
                    (select ic.relname from pg_catalog.pg_index i join pg_catalog.pg_class ic on ic.oid = i.indexrelid
                      where i.indrelid = c.oid and i.indisprimary),
                    (select ic.relname from pg_catalog.pg_index i join pg_catalog.pg_class ic on ic.oid = i.indexrelid
                      where i.indrelid = c.oid and i.indisunique and i.indisvalid and i.indimmediate
                        and i.indpred is null and i.indexprs is null
                        and not exists (select 1 from pg_catalog.pg_attribute a
                                         where a.attrelid = c.oid and a.attnum = any(i.indkey) and not a.attnotnull)
                      order by ic.relname limit 1)),
                 'bytes', pg_catalog.pg_total_relation_size(c.oid))
               order by n.nspname, c.relname), '[]'::json)
               from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
              where c.relkind = 'r' and c.relpersistence = 'p'
                and n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
                and not exists (select 1 from pg_catalog.pg_class s
                                 where s.relnamespace = n.oid and s.relname = 'sl_node' and s.relkind = 'r')
                and not exists (select 1 from pg_catalog.pg_depend dep
                                 where dep.classid = 'pg_catalog.pg_class'::regclass and dep.objid = c.oid
                                   and dep.deptype = 'e')),
  'sequences', (select coalesce(json_agg(json_build_object(
                    'name', pg_catalog.quote_ident(s.schemaname) || '.' || pg_catalog.quote_ident(s.sequencename),
                    'schema', s.schemaname,
                    'last_value', s.last_value)
                  order by s.schemaname, s.sequencename), '[]'::json)
                  from pg_catalog.pg_sequences s
                 where s.schemaname !~ '^pg_' and s.schemaname <> 'information_schema'
                   and not exists (select 1 from pg_catalog.pg_class t join pg_catalog.pg_namespace tn on tn.oid = t.relnamespace
                                    where tn.nspname = s.schemaname and t.relname = 'sl_node' and t.relkind = 'r'))
)
from pg_catalog.pg_database d
where d.datname = pg_catalog.current_database();
