-- What the installed pg_stress is made of, one fact per row: its member objects, each function's
-- definition, grants and comment, each relation's kind, row-level security, grants, columns, defaults,
-- constraints, indexes and policies, and the tables pg_dump keeps. Two databases whose rows are equal
-- have the same extension, whichever way (CREATE or ALTER EXTENSION … UPDATE) it got there.
-- ACLs are compared as they act (a NULL ACL as its default).
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'pg_stress'),
members AS (
    SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
      -- (not pgrx's schema `tests` and its #[pg_test] functions: in builds by cargo pgrx test only)
      AND NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = 'tests'
                      AND ((d.classid = 'pg_namespace'::regclass AND d.objid = n.oid)
                           OR (d.classid = 'pg_proc'::regclass
                               AND d.objid IN (SELECT p.oid FROM pg_proc p WHERE p.pronamespace = n.oid)))))
SELECT 'member ' || pg_describe_object(classid, objid, objsubid) FROM members
UNION ALL
SELECT 'function ' || p.oid::regprocedure || E'\n' || pg_get_functiondef(p.oid)
    || E'\nacl ' || coalesce(p.proacl, acldefault('f', p.proowner))::text
    || E'\ncomment ' || coalesce(obj_description(p.oid, 'pg_proc'), '')
FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'relation ' || c.oid::regclass || ' kind ' || c.relkind::text || ' rls ' || c.relrowsecurity::text
    || ' force ' || c.relforcerowsecurity::text || ' acl ' || coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))::text
    || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '')
    || CASE WHEN c.relkind = 'v' THEN E'\n' || pg_get_viewdef(c.oid) ELSE '' END
FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
    || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
    || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
    || coalesce(' comment ' || col_description(a.attrelid, a.attnum), '')
FROM members m JOIN pg_attribute a ON m.classid = 'pg_class'::regclass AND a.attrelid = m.objid
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || k.conrelid::regclass || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
FROM members m JOIN pg_constraint k ON m.classid = 'pg_class'::regclass AND k.conrelid = m.objid
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
FROM members m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
UNION ALL
SELECT 'policy ' || p.polrelid::regclass || ' ' || p.polname || ' ' || p.polcmd::text || ' ' || p.polpermissive::text
    || ' to ' || p.polroles::regrole[]::text || ' using ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
    || ' check ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
FROM members m JOIN pg_policy p ON m.classid = 'pg_class'::regclass AND p.polrelid = m.objid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid)
FROM members m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid AND NOT t.tgisinternal
UNION ALL
SELECT 'config ' || coalesce((SELECT string_agg(c::regclass::text || ' ' || coalesce(w, ''), ', ' ORDER BY c::regclass::text)
                              FROM unnest(e.extconfig, e.extcondition) AS u(c, w)), '')
FROM pg_extension e WHERE e.extname = 'pg_stress'
UNION ALL
SELECT 'schema stress acl ' || coalesce(n.nspacl, acldefault('n', n.nspowner))::text FROM pg_namespace n WHERE n.nspname = 'stress'
ORDER BY 1;
