//! A `jsonb` argument taken as its text, so that our own code parses it.
//!
//! pgrx's `JsonB` parses an argument with serde_json before the function runs and panics (XX000) on
//! what serde_json refuses, such as nesting deeper than 128 levels, which `jsonb` accepts. A
//! `JsonArg` is the argument's text (`jsonb_out`); [`JsonArg::parse`] gives a clear 22023 instead.

use crate::error::StressError;
use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable,
};
use pgrx::prelude::*;

#[derive(Debug, Clone)]
pub struct JsonArg(pub String);

impl JsonArg {
    /// The value, or 22023 naming `function` and `argument` when serde_json cannot take it.
    pub fn parse(
        &self,
        function: &'static str,
        argument: &str,
    ) -> Result<serde_json::Value, StressError> {
        serde_json::from_str(&self.0).map_err(|e| {
            StressError::invalid(
                function,
                format!("{argument} is not JSON pg_stress can read: {e}"),
                "Pass a flat JSON object or array (at most 128 levels of nesting).",
            )
        })
    }
}

impl FromDatum for JsonArg {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<JsonArg> {
        if is_null {
            return None;
        }
        // SAFETY: datum is a non-null jsonb (pgrx calls from_datum with the argument's own type);
        // jsonb_out returns a palloc'd C string, read and then freed here.
        unsafe {
            let text = pg_sys::OidOutputFunctionCall(pg_sys::F_JSONB_OUT.into(), datum);
            let value = std::ffi::CStr::from_ptr(text)
                .to_string_lossy()
                .into_owned();
            pg_sys::pfree(text.cast());
            Some(JsonArg(value))
        }
    }
}

// SAFETY: the argument is read with FromDatum (above), which takes a jsonb datum and copies it out.
unsafe impl<'fcx> ArgAbi<'fcx> for JsonArg {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: the caller's (pgrx's) contract: arg is this function's argument, of type jsonb.
        unsafe {
            arg.unbox_arg_using_from_datum()
                .unwrap_or_else(|| panic!("argument {index} must not be null"))
        }
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: as above.
        unsafe { arg.unbox_arg_using_from_datum().into() }
    }
}

// SAFETY: the SQL type declared is jsonb, the type FromDatum reads.
unsafe impl SqlTranslatable for JsonArg {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(JsonArg);
    const TYPE_ORIGIN: pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin =
        pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}
