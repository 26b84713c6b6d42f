//! The SMP wire protocol and the pure cryptography of the SimpleX relay.
//!
//! This crate does no I/O and has no async runtime: everything takes bytes (and, where time or
//! randomness matter, a time or a generator) and returns values or errors. Keeping it a separate
//! crate lets the compiler hold that line, and lets fuzz targets link only the parsers.
//!
//! - [`protocol`]: encodings, versions, commands, responses, errors, transmissions, blocks.
//! - [`crypto`]: keys, signatures, NaCl constructions, certificates, random IDs.
//! - [`calendar`]: civil dates from Unix days and back, for logs and JSON times.

pub mod calendar;
pub mod crypto;
pub mod protocol;
