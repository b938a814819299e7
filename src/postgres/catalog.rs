//! The extension's own tables, found in the catalog by name: no SQL, so no search_path and no
//! caller's objects in the way.

use pgrx::pg_sys;

/// Table `stress.<name>`, from the catalog; InvalidOid when there is none (the extension dropped,
/// or its SQL older than the table: a release's new table is missing until ALTER EXTENSION
/// UPDATE). In a transaction.
pub fn stress_table(name: &std::ffi::CStr) -> pg_sys::Oid {
    // SAFETY: catalog lookups by name, in a transaction; missing_ok, so nothing is raised.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(c"stress".as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        pg_sys::get_relname_relid(name.as_ptr(), namespace)
    }
}

/// Whether `stress.<name>` is there (see [`stress_table`]).
pub fn has_stress_table(name: &std::ffi::CStr) -> bool {
    stress_table(name) != pg_sys::InvalidOid
}
