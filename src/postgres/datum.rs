//! Reading varlena datums in place.

use pgrx::pg_sys;
use pgrx::varlena::{varatt_is_1b, varatt_is_1b_e, varatt_is_4b_u, vardata_any, varsize_any_exhdr};

/// The payload bytes of a varlena stored inline and uncompressed, where it is; `None` when it must
/// be detoasted first (see [`with_varlena_bytes`]).
///
/// # Safety
/// `raw` must point to a varlena that outlives the returned slice.
#[inline(always)]
pub unsafe fn varlena_in_place<'a>(raw: *const pg_sys::varlena) -> Option<&'a [u8]> {
    // SAFETY: the caller's contract: raw points to a varlena that outlives the slice; its header
    // says whether it is inline (4-byte uncompressed or 1-byte short), and only then is its payload
    // read, within the size that header gives.
    unsafe {
        let raw = raw.cast_mut();
        (varatt_is_4b_u(raw) || (varatt_is_1b(raw) && !varatt_is_1b_e(raw))).then(|| {
            std::slice::from_raw_parts(vardata_any(raw) as *const u8, varsize_any_exhdr(raw))
        })
    }
}

/// Call `f` with the payload bytes of a varlena datum (text, numeric, bytea, …). Values stored inline
/// and uncompressed (nearly all short values) are read where they are, without a call into
/// PostgreSQL; compressed or out-of-line ones are detoasted into a copy that is freed afterwards.
///
/// # Safety
/// `datum` must be a non-null varlena datum.
#[inline]
pub unsafe fn with_varlena_bytes<R>(datum: pg_sys::Datum, f: impl FnOnce(&[u8]) -> R) -> R {
    // SAFETY: the caller's contract: datum is a non-null varlena; a toasted or compressed one is
    // detoasted into palloc'd memory, read within its own size, and freed after f.
    unsafe {
        let raw = datum.cast_mut_ptr::<pg_sys::varlena>();
        if let Some(bytes) = varlena_in_place(raw) {
            return f(bytes);
        }
        let v = pg_sys::pg_detoast_datum_packed(raw);
        let result = f(std::slice::from_raw_parts(
            vardata_any(v) as *const u8,
            varsize_any_exhdr(v),
        ));
        pg_sys::pfree(v.cast());
        result
    }
}
