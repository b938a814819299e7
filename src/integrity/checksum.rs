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
            // SAFETY: a type cache lookup of a column's type id, which exists (it is an attribute
            // of an open relation); send and varlena are ours to fill.
            unsafe { pg_sys::getTypeBinaryOutputInfo(type_oid, &mut send, &mut varlena) };
            if send != pg_sys::InvalidOid {
                Encoding::Function(send, true)
            } else {
                // SAFETY: as above.
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
    /// lengths) a length prefix and the bytes. This is the definition of the encoding; rows of the
    /// common column kinds take [`RowEncoder`]'s fast path, which writes the same bytes.
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
        // SAFETY: the caller's contract: values and nulls are a deformed tuple of this encoder's
        // descriptor, so a non-null datum is of this column's type: by value, a fixed-length
        // pointer of len bytes, a varlena, or whatever its output function takes.
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

    /// [`Self::encode`] into `buf` at `at` for the kinds that need no call into PostgreSQL (values
    /// by value, fixed-length by reference, payloads stored in place), returning the new end; `None`
    /// for any other kind or when the value does not fit, and the row then takes `encode`.
    ///
    /// # Safety
    /// As for [`Self::encode`].
    #[inline(always)]
    unsafe fn encode_fast(
        &self,
        values: &[pg_sys::Datum],
        nulls: &[bool],
        buf: &mut [u8; FAST_ROW_BYTES],
        at: usize,
    ) -> Option<usize> {
        // Every write below is bounds-checked against this first.
        if at + 3 + 8 > FAST_ROW_BYTES {
            return None;
        }
        let out = buf.as_mut_ptr();
        let [p0, p1] = self.position.to_le_bytes();
        // SAFETY: the caller's contract: nulls holds the descriptor's columns, and attno is one of
        // them.
        let null = unsafe { *nulls.get_unchecked(self.attno) };
        // SAFETY: at + 3 + 8 <= FAST_ROW_BYTES was checked above.
        unsafe { std::ptr::write_unaligned(out.add(at).cast::<[u8; 3]>(), [p0, p1, !null as u8]) };
        if null {
            return Some(at + 3);
        }
        let at = at + 3;
        // SAFETY: as for nulls.
        let datum = unsafe { *values.get_unchecked(self.attno) };
        // SAFETY: the caller's contract (a deformed tuple of this descriptor) gives each kind's
        // pointer and length; every write is bounded by the checks against FAST_ROW_BYTES in each
        // arm.
        unsafe {
            match self.encoding {
                // Little-endian low bytes: 8 written, `len` kept.
                Encoding::ByValue(len) => {
                    std::ptr::write_unaligned(
                        out.add(at).cast::<u64>(),
                        (datum.value() as u64).to_le(),
                    );
                    Some(at + len.min(8))
                }
                Encoding::FixedRef(len) if at + len <= FAST_ROW_BYTES => {
                    std::ptr::copy_nonoverlapping(datum.cast_mut_ptr::<u8>(), out.add(at), len);
                    Some(at + len)
                }
                Encoding::Payload => {
                    let bytes = crate::postgres::datum::varlena_in_place(datum.cast_mut_ptr())?;
                    let n = bytes.len();
                    if at + 4 + n > FAST_ROW_BYTES {
                        return None;
                    }
                    std::ptr::write_unaligned(
                        out.add(at).cast::<[u8; 4]>(),
                        (n as u32).to_le_bytes(),
                    );
                    copy_payload(bytes.as_ptr(), out.add(at + 4), n, out.add(FAST_ROW_BYTES));
                    Some(at + 4 + n)
                }
                _ => None,
            }
        }
    }
}

/// Rows whose encoding fits in this many bytes (nearly all rows of narrow tables) are encoded into
/// a fixed buffer, with the write position in a register; others into a growable one.
const FAST_ROW_BYTES: usize = 2048;

/// Encodes and hashes the rows of one relation. A checksum's cost is mostly here: about 3 ns a
/// column on the fast path, against 5–6 through `Vec` appends whose length must be reloaded after
/// every byte store.
pub struct RowEncoder {
    columns: Vec<ColumnEncoder>,
    spill: Vec<u8>,
    fast: Box<[u8; FAST_ROW_BYTES]>,
}

impl RowEncoder {
    pub fn new(columns: Vec<ColumnEncoder>) -> Self {
        RowEncoder {
            columns,
            spill: Vec::with_capacity(FAST_ROW_BYTES * 2),
            fast: Box::new([0; FAST_ROW_BYTES]),
        }
    }

    /// Whether parallel workers may encode these rows: every send or output function the encoding
    /// calls is PARALLEL SAFE (as a parallel query requires of the functions it runs in workers).
    pub fn parallel_safe(&self) -> bool {
        self.columns.iter().all(|c| match c.encoding {
            Encoding::Function(func, _) => {
                // SAFETY: a catalog lookup of a function id the type cache gave (its send or output
                // function).
                (unsafe { pg_sys::func_parallel(func) }) as u8 == pg_sys::PROPARALLEL_SAFE
            }
            _ => true,
        })
    }

    /// Whether every column takes the fast path when its value fits and is stored in place (tests
    /// use it to know they exercise that path).
    #[cfg(any(test, feature = "pg_test"))]
    pub fn fast_path_covers_every_column(&self) -> bool {
        self.columns.iter().all(|c| {
            matches!(
                c.encoding,
                Encoding::ByValue(_) | Encoding::FixedRef(_) | Encoding::Payload
            )
        })
    }

    /// Add one row to `digest`.
    ///
    /// # Safety
    /// As for [`ColumnEncoder::encode`].
    #[inline(always)]
    pub unsafe fn add_row(
        &mut self,
        values: &[pg_sys::Datum],
        nulls: &[bool],
        digest: &mut Digest,
    ) {
        let mut at = 0;
        for column in &self.columns {
            // SAFETY: the caller's contract, which this function has too.
            match unsafe { column.encode_fast(values, nulls, &mut self.fast, at) } {
                Some(end) => at = end,
                // SAFETY: as above.
                None => return unsafe { self.add_row_general(values, nulls, digest) },
            }
        }
        digest.add_row(&self.fast[..at]);
    }

    /// Add one row through [`ColumnEncoder::encode`] alone.
    ///
    /// # Safety
    /// As for [`ColumnEncoder::encode`].
    #[cold]
    #[inline(never)]
    pub unsafe fn add_row_general(
        &mut self,
        values: &[pg_sys::Datum],
        nulls: &[bool],
        digest: &mut Digest,
    ) {
        self.spill.clear();
        for column in &self.columns {
            // SAFETY: as above.
            unsafe { column.encode(values, nulls, &mut self.spill) };
        }
        digest.add_row(&self.spill);
    }
}

fn push_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Copy a payload of `n` bytes into the fast buffer, which ends at `end`.
///
/// Payloads are mostly codes and numerics of 3 to 12 bytes. Copying exactly `n` bytes branches on
/// `n`, and those branches mispredicted enough to cost ~10 ns a row; so when the 16 bytes from
/// `src` lie within one 4 kB memory page (which cannot be partly mapped: no fault is possible) and
/// the buffer has room, 16 bytes are copied in one load and store. The bytes past `n` are written
/// over by the next column or lie past the row's end: they are never hashed.
///
/// # Safety
/// `src..src+n` readable, `dst..dst+n` writable and inside the buffer that ends at `end`.
#[inline(always)]
unsafe fn copy_payload(src: *const u8, dst: *mut u8, n: usize, end: *mut u8) {
    const PAGE: usize = 4096;
    let whole_load_in_page = (src as usize % PAGE) <= PAGE - 16;
    // SAFETY: the caller's contract: src..src+n is readable, dst..dst+n writable within the buffer
    // ending at end; the 16-byte load is taken only inside one page (never a partly mapped one) and
    // the 16-byte store only when dst+16 <= end.
    unsafe {
        if n <= 16 && whole_load_in_page && dst.add(16) <= end {
            let chunk = std::ptr::read_unaligned(src.cast::<[u8; 16]>());
            std::ptr::write_unaligned(dst.cast::<[u8; 16]>(), chunk);
        } else {
            copy_short(src, dst, n);
        }
    }
}

/// `copy_nonoverlapping(src, dst, n)`, inline for n < 16: codes, short text and numerics are a few
/// bytes long, and a `memcpy` call for each was a checksum's largest single cost.
///
/// # Safety
/// As for `copy_nonoverlapping`.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    use std::ptr::{read_unaligned as get, write_unaligned as put};
    // SAFETY: the caller's contract: src..src+n readable and dst..dst+n writable; every load and
    // store below stays within n bytes of each.
    unsafe {
        if n >= 16 {
            std::ptr::copy_nonoverlapping(src, dst, n);
        } else if n >= 8 {
            let (head, tail) = (get(src.cast::<u64>()), get(src.add(n - 8).cast::<u64>()));
            put(dst.cast::<u64>(), head);
            put(dst.add(n - 8).cast::<u64>(), tail);
        } else if n >= 4 {
            let (head, tail) = (get(src.cast::<u32>()), get(src.add(n - 4).cast::<u32>()));
            put(dst.cast::<u32>(), head);
            put(dst.add(n - 4).cast::<u32>(), tail);
        } else if n >= 2 {
            let (head, tail) = (get(src.cast::<u16>()), get(src.add(n - 2).cast::<u16>()));
            put(dst.cast::<u16>(), head);
            put(dst.add(n - 2).cast::<u16>(), tail);
        } else if n == 1 {
            *dst = *src;
        }
    }
}

/// The payload of a (detoasted, possibly short-header) varlena.
unsafe fn varlena_bytes<'a>(v: *const pg_sys::varlena) -> &'a [u8] {
    // SAFETY: the caller's contract: v is a detoasted varlena (short header or not), whose header
    // gives its payload's size.
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
    fn payload_copies_are_exact_on_both_sides_of_a_page_boundary() {
        let layout = std::alloc::Layout::from_size_align(8192, 4096).unwrap();
        // SAFETY: page is a fresh 8192-byte allocation, written and read only within its bounds,
        // and freed at the end.
        unsafe {
            let page = std::alloc::alloc(layout);
            for i in 0..8192 {
                *page.add(i) = (i % 251) as u8;
            }
            let mut buf = [0u8; FAST_ROW_BYTES];
            // Sources at the start of a page (one 16-byte load) and in its last 16 bytes (exact).
            for offset in (0..24).chain(4070..4096) {
                for n in 0..=40 {
                    buf.fill(0xee);
                    let end = buf.as_mut_ptr().add(FAST_ROW_BYTES);
                    copy_payload(page.add(offset), buf.as_mut_ptr().add(100), n, end);
                    let source = std::slice::from_raw_parts(page.add(offset), n);
                    assert_eq!(&buf[100..100 + n], source, "offset {offset}, {n} bytes");
                    assert!(buf[..100].iter().all(|&b| b == 0xee));
                }
            }
            // At the end of the buffer: never a write past it.
            let mut tail = [0u8; FAST_ROW_BYTES + 16];
            let end = tail.as_mut_ptr().add(FAST_ROW_BYTES);
            copy_payload(page, tail.as_mut_ptr().add(FAST_ROW_BYTES - 5), 5, end);
            assert_eq!(&tail[FAST_ROW_BYTES - 5..FAST_ROW_BYTES], &[0, 1, 2, 3, 4]);
            assert!(tail[FAST_ROW_BYTES..].iter().all(|&b| b == 0));
            std::alloc::dealloc(page, layout);
        }
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
