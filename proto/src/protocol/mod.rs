//! The SMP wire protocol: encodings, versions, commands, responses, errors, transmissions and
//! blocks. No I/O and no async here: decoders take bytes and return values or errors.

pub mod command;
pub mod encoding;
pub mod errors;
pub mod handshake;
pub mod names;
pub mod response;
pub mod transmission;
pub mod version;
