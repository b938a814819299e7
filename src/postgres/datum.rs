//! Reading varlena datums in place.

use pgrx::pg_sys;
use pgrx::varlena::{varatt_is_1b, varatt_is_1b_e, varatt_is_4b_u, vardata_any, varsize_any_exhdr};

/// Call `f` with the payload bytes of a varlena datum (text, numeric, bytea, …). Values stored inline
/// and uncompressed (nearly all short values) are read where they are, without a call into
/// PostgreSQL; compressed or out-of-line ones are detoasted into a copy that is freed afterwards.
///
/// # Safety
/// `datum` must be a non-null varlena datum.
#[inline]
pub unsafe fn with_varlena_bytes<R>(datum: pg_sys::Datum, f: impl FnOnce(&[u8]) -> R) -> R {
    unsafe {
        let raw = datum.cast_mut_ptr::<pg_sys::varlena>();
        let in_place = varatt_is_4b_u(raw) || (varatt_is_1b(raw) && !varatt_is_1b_e(raw));
        let v = if in_place {
            raw
        } else {
            pg_sys::pg_detoast_datum_packed(raw)
        };
        let result = f(std::slice::from_raw_parts(
            vardata_any(v) as *const u8,
            varsize_any_exhdr(v),
        ));
        if v != raw {
            pg_sys::pfree(v.cast());
        }
        result
    }
}
