//! `stress.checksum(regclass)`: an order-independent digest of a table's content.
//!
//! Each row is encoded canonically (column position, a null flag, then the value's bytes) and hashed
//! with XXH3-128; the row hashes are added modulo 2^128. Addition commutes, so physical order
//! (CLUSTER, VACUUM FULL, a restore) does not matter, while any changed value changes its row's hash.
//! The row count is part of the result, so `count:digest` reads at a glance.
//!
//! Values are encoded so that a dump and restore gives the same bytes: fixed-length values as their
//! datum bytes, text and numeric as their (detoasted) varlena payload, every other type through its
//! binary send function (as COPY BINARY would), or its output function when it has none. Timestamps
//! are hashed as integers, so the session's TimeZone and DateStyle do not matter.

use pgrx::pg_sys;
use xxhash_rust::xxh3::xxh3_128;

/// The running digest of a set of rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub rows: u64,
    pub sum: u128,
}

impl Digest {
    pub fn add_row(&mut self, encoded_row: &[u8]) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(xxh3_128(encoded_row));
    }

    pub fn merge(&mut self, other: Digest) {
        self.rows += other.rows;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{:032x}", self.rows, self.sum)
    }
}

/// How one column's non-null values become bytes.
#[derive(Clone, Copy)]
enum Encoding {
    /// Pass-by-value: the low `len` bytes of the datum.
    ByValue(usize),
    /// Fixed-length by reference (uuid, interval, name, …): `len` bytes at the pointer.
    FixedRef(usize),
    /// Variable length with a canonical payload (text family, bytea, numeric): the detoasted bytes.
    Payload,
    /// NUL-terminated C string.
    CString,
    /// Anything else: the bytes its send (or, failing that, output) function produces.
    Function(pg_sys::Oid, bool),
}

/// One column of the digest: where it sits in the tuple and how to encode it.
#[derive(Clone, Copy)]
pub struct ColumnEncoder {
    /// Position among the table's live columns: what is hashed, so dropped columns and a partition's
    /// own attribute numbering do not change the digest.
    position: u16,
    /// 0-based attribute number in the tuples being read.
    attno: usize,
    encoding: Encoding,
}

const PAYLOAD_TYPES: &[pg_sys::Oid] = &[
    pg_sys::TEXTOID,
    pg_sys::VARCHAROID,
    pg_sys::BPCHAROID,
    pg_sys::BYTEAOID,
    pg_sys::NUMERICOID,
];

impl ColumnEncoder {
    /// An encoder for live column `position`, read from attribute `attno` (0-based).
    pub fn new(
        position: u16,
        attno: usize,
        type_oid: pg_sys::Oid,
        typlen: i16,
        typbyval: bool,
    ) -> Self {
        let encoding = if typbyval {
            Encoding::ByValue(typlen as usize)
        } else if typlen > 0 {
            Encoding::FixedRef(typlen as usize)
        } else if typlen == -2 {
            Encoding::CString
        } else if PAYLOAD_TYPES.contains(&type_oid) {
            Encoding::Payload
        } else {
            let mut send = pg_sys::InvalidOid;
            let mut varlena = false;
            unsafe { pg_sys::getTypeBinaryOutputInfo(type_oid, &mut send, &mut varlena) };
            if send != pg_sys::InvalidOid {
                Encoding::Function(send, true)
            } else {
                unsafe { pg_sys::getTypeOutputInfo(type_oid, &mut send, &mut varlena) };
                Encoding::Function(send, false)
            }
        };
        ColumnEncoder {
            position,
            attno,
            encoding,
        }
    }

    /// Append this column's encoding to `out`: its position, a null flag, then (for varying
    /// lengths) a length prefix and the bytes.
    ///
    /// # Safety
    /// `values`/`nulls` must be a deformed tuple of the descriptor this encoder was built for.
    pub unsafe fn encode(&self, values: &[pg_sys::Datum], nulls: &[bool], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.position.to_le_bytes());
        if nulls[self.attno] {
            out.push(0);
            return;
        }
        out.push(1);
        let datum = values[self.attno];
        unsafe {
            match self.encoding {
                Encoding::ByValue(len) => {
                    out.extend_from_slice(&(datum.value() as u64).to_le_bytes()[..len.min(8)])
                }
                Encoding::FixedRef(len) => out
                    .extend_from_slice(std::slice::from_raw_parts(datum.cast_mut_ptr::<u8>(), len)),
                Encoding::Payload => crate::postgres::datum::with_varlena_bytes(datum, |bytes| {
                    push_sized(out, bytes)
                }),
                Encoding::CString => push_sized(
                    out,
                    std::ffi::CStr::from_ptr(datum.cast_mut_ptr()).to_bytes(),
                ),
                Encoding::Function(func, true) => {
                    let bytes = pg_sys::OidSendFunctionCall(func, datum);
                    push_sized(out, varlena_bytes(bytes));
                    pg_sys::pfree(bytes.cast());
                }
                Encoding::Function(func, false) => {
                    let text = pg_sys::OidOutputFunctionCall(func, datum);
                    push_sized(out, std::ffi::CStr::from_ptr(text).to_bytes());
                    pg_sys::pfree(text.cast());
                }
            }
        }
    }
}

fn push_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The payload of a (detoasted, possibly short-header) varlena.
unsafe fn varlena_bytes<'a>(v: *const pg_sys::varlena) -> &'a [u8] {
    unsafe {
        std::slice::from_raw_parts(
            pgrx::varlena::vardata_any(v) as *const u8,
            pgrx::varlena::varsize_any_exhdr(v),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_row_order_but_not_content() {
        let rows: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut forward = Digest::default();
        rows.iter().for_each(|r| forward.add_row(r));
        let mut backward = Digest::default();
        rows.iter().rev().for_each(|r| backward.add_row(r));
        assert_eq!(forward, backward);

        let mut changed = Digest::default();
        rows.iter().enumerate().for_each(|(i, r)| {
            if i == 50 {
                changed.add_row(&[9, 9, 9, 9])
            } else {
                changed.add_row(r)
            }
        });
        assert_ne!(forward, changed);
        assert_eq!(forward.to_string().split(':').next(), Some("100"));
    }

    #[test]
    fn merging_halves_equals_the_whole() {
        let mut whole = Digest::default();
        let (mut a, mut b) = (Digest::default(), Digest::default());
        for i in 0..10u8 {
            whole.add_row(&[i]);
            if i % 2 == 0 {
                a.add_row(&[i])
            } else {
                b.add_row(&[i])
            }
        }
        a.merge(b);
        assert_eq!(a, whole);
    }
}
