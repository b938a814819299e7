//! Small helpers for building SQL safely: identifiers are always quoted by PostgreSQL's own rules.

use pgrx::pg_sys;
use std::ffi::{CStr, CString};

/// `quote_ident(name)`, as PostgreSQL does it.
pub fn quote_ident(name: &str) -> String {
    let c = CString::new(name).expect("identifier without NUL");
    // SAFETY: quote_identifier takes a NUL-terminated string (c lives across the call) and returns
    // it or a palloc'd copy, read at once.
    unsafe {
        let quoted = pg_sys::quote_identifier(c.as_ptr());
        CStr::from_ptr(quoted).to_string_lossy().into_owned()
    }
}

/// `schema.table`, each part quoted.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}
