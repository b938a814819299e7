//! How generated rows reach the heap: the table access method's multi-insert with a bulk-insert
//! state, as `COPY FROM` does it, without parsing any text.
//!
//! Rows are filled straight into tuple slots as datums, handed to `multi_insert` a batch at a time,
//! and every by-reference datum of a batch lives in one memory context that is reset after the batch:
//! memory stays flat however many rows are written. Constraints (NOT NULL, CHECK) are evaluated with
//! the executor's own `ExecConstraints`. Index entries are either inserted per row
//! (`ExecInsertIndexTuples`, for appends) or left to one rebuild at the end (`IndexMode::Rebuild`, for
//! a table that was empty: a sorted build is several times cheaper than a million index inserts).

use pgrx::pg_sys;
use std::ptr;

/// What happens to the table's indexes while rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMode {
    /// Insert index entries as rows are written.
    Maintain,
    /// Write the heap only; the caller rebuilds every index before the transaction can commit.
    Rebuild,
}

pub struct BulkWriter {
    rel: pg_sys::Relation,
    estate: *mut pg_sys::EState,
    result_rel: *mut pg_sys::ResultRelInfo,
    bistate: pg_sys::BulkInsertState,
    slots: Vec<*mut pg_sys::TupleTableSlot>,
    filled: usize,
    natts: usize,
    command_id: pg_sys::CommandId,
    insert_options: i32,
    index_mode: IndexMode,
    check_constraints: bool,
    batch_memory: pg_sys::MemoryContext,
    rows_written: u64,
}

impl BulkWriter {
    /// Prepare to write into `rel`, which the caller has opened and locked for writing.
    ///
    /// # Safety
    /// `rel` must be an open, locked, plain heap relation and stay open until [`finish`](Self::finish).
    pub unsafe fn new(rel: pg_sys::Relation, index_mode: IndexMode, batch_rows: usize) -> Self {
        // SAFETY: the caller's contract: rel is open, locked and a plain heap until finish; the
        // executor state, result relation and slots made here live in the caller's memory context
        // and are released by finish (or the transaction's abort).
        unsafe {
            let estate = pg_sys::CreateExecutorState();
            let result_rel =
                pg_sys::palloc0(size_of::<pg_sys::ResultRelInfo>()) as *mut pg_sys::ResultRelInfo;
            (*result_rel).type_ = pg_sys::NodeTag::T_ResultRelInfo;
            pg_sys::InitResultRelInfo(result_rel, rel, 0, ptr::null_mut(), 0);
            if index_mode == IndexMode::Maintain {
                pg_sys::ExecOpenIndices(result_rel, false);
            }
            let tupdesc = (*rel).rd_att;
            let constr = (*tupdesc).constr;
            let check_constraints = !constr.is_null()
                && ((*constr).has_not_null || (*constr).num_check > 0)
                || (*(*rel).rd_rel).relispartition;
            let slot_ops = pg_sys::table_slot_callbacks(rel);
            let slots = (0..batch_rows.max(1))
                .map(|_| pg_sys::MakeSingleTupleTableSlot(tupdesc, slot_ops))
                .collect();
            // Like COPY: a relation created (or given a new relfilenode) in this transaction has no
            // free space worth looking up.
            let new_in_this_xact = crate::postgres::version::new_in_this_transaction(rel);
            let batch_memory = pg_sys::AllocSetContextCreateInternal(
                pg_sys::CurrentMemoryContext,
                c"pg_stress bulk batch".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            BulkWriter {
                rel,
                estate,
                result_rel,
                bistate: pg_sys::GetBulkInsertState(),
                slots,
                filled: 0,
                natts: (*tupdesc).natts as usize,
                command_id: pg_sys::GetCurrentCommandId(true),
                insert_options: if new_in_this_xact {
                    pg_sys::TABLE_INSERT_SKIP_FSM as i32
                } else {
                    0
                },
                index_mode,
                check_constraints,
                batch_memory,
                rows_written: 0,
            }
        }
    }

    /// Append one row: `fill` sets its datums and nulls (all start non-null). By-reference datums
    /// must be allocated while `fill` runs: it runs in the batch's memory context. Returns whether
    /// this row completed a batch, which was then written.
    #[inline]
    pub fn push(&mut self, fill: impl FnOnce(&mut [pg_sys::Datum], &mut [bool])) -> bool {
        // SAFETY: self.filled < slots.len() always (a full batch is flushed before returning); the
        // slot is one of ours, made for this relation's descriptor of natts columns, so its values
        // and nulls arrays hold natts entries.
        unsafe {
            let slot = self.slots[self.filled];
            if let Some(clear) = (*(*slot).tts_ops).clear {
                pg_sys::ffi::pg_guard_ffi_boundary(|| clear(slot));
            }
            let values = std::slice::from_raw_parts_mut((*slot).tts_values, self.natts);
            let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, self.natts);
            nulls.fill(false);
            let outer = pg_sys::MemoryContextSwitchTo(self.batch_memory);
            fill(values, nulls);
            pg_sys::MemoryContextSwitchTo(outer);
            pg_sys::ExecStoreVirtualTuple(slot);
        }
        self.filled += 1;
        let full = self.filled == self.slots.len();
        if full {
            self.flush();
        }
        full
    }

    /// Append one row formed elsewhere (a generator worker): `tuple` is a heap tuple's bytes for
    /// this table, copied into the slot. Returns whether this row completed a batch.
    pub fn push_formed(&mut self, tuple: &[u8]) -> bool {
        // SAFETY: as in push; tuple is a heap tuple's bytes formed by a worker from this relation's
        // descriptor, copied (ExecStoreHeapTuple into our own slot, then materialised) before the
        // slice goes.
        unsafe {
            let slot = self.slots[self.filled];
            let mut data = pg_sys::HeapTupleData {
                t_len: tuple.len() as u32,
                t_self: pg_sys::ItemPointerData::default(),
                t_tableOid: (*self.rel).rd_id,
                t_data: tuple.as_ptr() as *mut pg_sys::HeapTupleHeaderData,
            };
            pg_sys::ExecForceStoreHeapTuple(&mut data, slot, false);
        }
        self.filled += 1;
        let full = self.filled == self.slots.len();
        if full {
            self.flush();
        }
        full
    }

    /// Rows handed to the table so far.
    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    fn flush(&mut self) {
        if self.filled == 0 {
            return;
        }
        pg_sys::check_for_interrupts!();
        // SAFETY: the slots up to filled hold rows of this relation (push and push_formed filled
        // them); estate, result_rel and batch memory are ours and alive until finish.
        unsafe {
            let outer = pg_sys::MemoryContextSwitchTo(self.batch_memory);
            let batch = &mut self.slots[..self.filled];
            if self.check_constraints {
                for &slot in batch.iter() {
                    pg_sys::ExecConstraints(self.result_rel, slot, self.estate);
                }
            }
            let multi_insert = (*(*self.rel).rd_tableam)
                .multi_insert
                .expect("table AM has multi_insert");
            // A table AM callback is a raw C function pointer, outside pgrx's generated guards: an
            // ERROR it raises must become a Rust panic here, not a longjmp over Rust frames.
            pg_sys::ffi::pg_guard_ffi_boundary(|| {
                multi_insert(
                    self.rel,
                    batch.as_mut_ptr(),
                    batch.len() as i32,
                    self.command_id,
                    self.insert_options,
                    self.bistate,
                )
            });
            if self.index_mode == IndexMode::Maintain && (*self.result_rel).ri_NumIndices > 0 {
                for &slot in batch.iter() {
                    crate::postgres::version::insert_index_tuples(
                        self.result_rel,
                        slot,
                        self.estate,
                    );
                }
            }
            pg_sys::MemoryContextSwitchTo(outer);
            let per_tuple = (*self.estate).es_per_tuple_exprcontext;
            if !per_tuple.is_null() {
                pg_sys::MemoryContextReset((*per_tuple).ecxt_per_tuple_memory);
            }
            pg_sys::MemoryContextReset(self.batch_memory);
        }
        self.rows_written += self.filled as u64;
        self.filled = 0;
    }

    /// Write what is buffered and release everything but the relation. Returns rows written.
    /// (On an ERROR instead, the transaction's abort releases buffers, locks and memory.)
    pub fn finish(mut self) -> u64 {
        self.flush();
        // SAFETY: rel is still open (the contract of new); the table AM callbacks, indexes and
        // executor state closed here were opened by new and are closed once.
        unsafe {
            if let Some(finish_bulk_insert) = (*(*self.rel).rd_tableam).finish_bulk_insert {
                pg_sys::ffi::pg_guard_ffi_boundary(|| {
                    finish_bulk_insert(self.rel, self.insert_options)
                });
            }
            pg_sys::FreeBulkInsertState(self.bistate);
            if self.index_mode == IndexMode::Maintain {
                pg_sys::ExecCloseIndices(self.result_rel);
            }
            for &slot in &self.slots {
                pg_sys::ExecDropSingleTupleTableSlot(slot);
            }
            pg_sys::FreeExecutorState(self.estate);
            pg_sys::MemoryContextDelete(self.batch_memory);
        }
        self.rows_written
    }
}

/// A `numeric` datum worth `units × 10^-scale`, with exactly `scale` decimal places (as a
/// `numeric(p, scale)` column stores it), allocated in the current memory context.
#[inline]
pub fn numeric_datum(units: i64, scale: i32) -> pg_sys::Datum {
    // SAFETY: int64_div_fast_to_numeric makes a palloc'd numeric in the current context; any units
    // and a scale from our own models (0 to 8) are valid inputs.
    unsafe { pg_sys::Datum::from(pg_sys::int64_div_fast_to_numeric(units, scale)) }
}

/// The value of a `numeric` datum in 10^-8 units (digits beyond the 8th decimal are dropped),
/// decoded from its stored form without calling into PostgreSQL; None for NaN and infinities.
///
/// # Safety
/// `datum` must be a non-null `numeric` datum.
pub unsafe fn numeric_units(datum: pg_sys::Datum) -> Option<i128> {
    // SAFETY: the caller's contract: datum is a non-null numeric, hence a varlena.
    unsafe { crate::postgres::datum::with_varlena_bytes(datum, numeric_bytes_to_units) }
}

/// See [`numeric_units`]: the payload of a numeric varlena.
fn numeric_bytes_to_units(bytes: &[u8]) -> Option<i128> {
    const NBASE: i128 = 10_000;
    let word = |i: usize| u16::from_ne_bytes([bytes[2 * i], bytes[2 * i + 1]]);
    let header = word(0);
    // numeric.c: the top two bits say short (10), special (11) or long positive/negative (00/01).
    let (negative, weight, first_digit) = match header & 0xC000 {
        0xC000 => return None,
        0x8000 => {
            let weight = (header & 0x003F) as i32;
            let weight = if header & 0x0040 != 0 {
                weight | !0x003F
            } else {
                weight
            };
            (header & 0x2000 != 0, weight, 1)
        }
        sign => (sign == 0x4000, word(1) as i16 as i32, 2),
    };
    let ndigits = bytes.len() / 2 - first_digit;
    let mut units: i128 = 0;
    // value = Σ digit_i · NBASE^(weight − i); units = value · 10^8 = Σ digit_i · NBASE^(weight − i + 2)
    for i in 0..ndigits {
        let exponent = weight - i as i32 + 2;
        if exponent < 0 {
            break;
        }
        units += word(first_digit + i) as i128 * NBASE.pow(exponent as u32);
    }
    Some(if negative { -units } else { units })
}

/// A member value of [`jsonb_object_datum`].
pub enum JsonValue<'a> {
    Text(&'a str),
    /// a `numeric` datum
    Numeric(pg_sys::Datum),
}

/// A `jsonb` object datum built with PostgreSQL's own JsonbValue builder, as `jsonb_build_object`
/// does: no JSON text is written or parsed. Keys are sorted and deduplicated by the builder.
pub fn jsonb_object_datum(members: &[(&str, JsonValue)]) -> pg_sys::Datum {
    use pg_sys::JsonbIteratorToken::{WJB_BEGIN_OBJECT, WJB_END_OBJECT, WJB_KEY, WJB_VALUE};
    fn string(s: &str) -> pg_sys::JsonbValue {
        pg_sys::JsonbValue {
            type_: pg_sys::jbvType::jbvString,
            val: pg_sys::JsonbValue__bindgen_ty_1 {
                string: pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
                    len: s.len() as i32,
                    val: s.as_ptr() as *mut _,
                },
            },
        }
    }
    // SAFETY: the JsonbParseState is built and turned into a jsonb here, in the current memory
    // context; every JsonbValue pushed points at strings and numerics that live across the calls.
    unsafe {
        let mut state: *mut pg_sys::JsonbParseState = ptr::null_mut();
        pg_sys::pushJsonbValue(&mut state, WJB_BEGIN_OBJECT, ptr::null_mut());
        for (key, value) in members {
            let mut key = string(key);
            pg_sys::pushJsonbValue(&mut state, WJB_KEY, &mut key);
            let mut value = match value {
                JsonValue::Text(s) => string(s),
                JsonValue::Numeric(d) => pg_sys::JsonbValue {
                    type_: pg_sys::jbvType::jbvNumeric,
                    val: pg_sys::JsonbValue__bindgen_ty_1 {
                        numeric: d.cast_mut_ptr(),
                    },
                },
            };
            pg_sys::pushJsonbValue(&mut state, WJB_VALUE, &mut value);
        }
        let object = pg_sys::pushJsonbValue(&mut state, WJB_END_OBJECT, ptr::null_mut());
        pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(object))
    }
}

/// A `text` datum, allocated in the current memory context.
pub fn text_datum(s: &str) -> pg_sys::Datum {
    // SAFETY: cstring_to_text_with_len copies len bytes of s (valid UTF-8, as a Rust str is) into a
    // palloc'd text.
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
            s.as_ptr() as *const _,
            s.len() as i32,
        ))
    }
}

/// Whether a relation's main fork has no blocks at all: freshly created or truncated.
pub fn has_no_blocks(rel: pg_sys::Relation) -> bool {
    // SAFETY: rel is an open relation (every caller holds it open and locked).
    unsafe { pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) == 0 }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use pgrx::prelude::*;

    #[pg_test]
    fn numeric_datum_keeps_scale() {
        let text = Spi::get_one_with_args::<String>(
            "SELECT $1::numeric::text",
            // SAFETY: the datum is a numeric just made by numeric_datum.
            &[unsafe {
                pgrx::datum::DatumWithOid::new(
                    numeric_datum(6_500_012_000_000, 8),
                    pg_sys::NUMERICOID,
                )
            }],
        );
        assert_eq!(text.unwrap().as_deref(), Some("65000.12000000"));
    }

    #[pg_test]
    fn jsonb_objects_are_what_jsonb_in_would_make() {
        let datum = jsonb_object_datum(&[
            ("ip", JsonValue::Text("10.1.2.3")),
            ("delta", JsonValue::Numeric(numeric_datum(-123_450, 2))),
            ("a \"quoted\" key", JsonValue::Text("ünïcode")),
        ]);
        let same = Spi::get_one_with_args::<bool>(
            r#"SELECT $1 = '{"ip": "10.1.2.3", "delta": -1234.50, "a \"quoted\" key": "ünïcode"}'::jsonb
                      AND $1::text = '{"ip": "10.1.2.3", "delta": -1234.50, "a \"quoted\" key": "ünïcode"}'::jsonb::text"#,
            // SAFETY: datum is the jsonb just made by jsonb_datum.
            &[unsafe { pgrx::datum::DatumWithOid::new(datum, pg_sys::JSONBOID) }],
        );
        assert_eq!(same.unwrap(), Some(true));
    }

    #[pg_test]
    fn numeric_units_decode_short_long_and_negative_forms() {
        for (text, units) in [
            ("0", 0i128),
            ("1", 100_000_000),
            ("-1", -100_000_000),
            ("0.00000001", 1),
            ("65000.12000000", 6_500_012_000_000),
            ("-0.5", -50_000_000),
            (
                "123456789012345678.12345678",
                12_345_678_901_234_567_812_345_678,
            ),
            ("1e30", 100_000_000 * 10i128.pow(30)),
            ("0.123456789", 12_345_678),
        ] {
            let datum = Spi::get_one::<pgrx::AnyNumeric>(&format!("SELECT '{text}'::numeric"))
                .unwrap()
                .unwrap();
            // SAFETY: the datum is a numeric PostgreSQL just gave us, never null here.
            let decoded = unsafe { numeric_units(datum.into_datum().unwrap()) };
            assert_eq!(decoded, Some(units), "{text}");
        }
        let nan = Spi::get_one::<pgrx::AnyNumeric>("SELECT 'NaN'::numeric")
            .unwrap()
            .unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { numeric_units(nan.into_datum().unwrap()) }, None);
    }
}
