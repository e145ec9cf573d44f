//! Where fetched objects go: a framed stream, a blob store directory, a JSON report.
//!
//! - [`framed`] writes whole, verified objects as frames on a byte stream (stdout), through
//!   [`gather`], which writes them without copying their content;
//! - [`layout`] stores blobs by digest in an OCI image layout, atomically;
//! - [`layout_check`] refuses a directory that holds something other than a layout;
//! - [`index`] adds entries to a layout's `index.json`, safely against concurrent runs,
//!   through `index_text`, which keeps what other tools wrote there as they wrote it;
//! - [`report`] describes each input object as one JSON line;
//! - [`spool`] holds an object's bytes until its frame can be written;
//! - [`stream`] writes an object to a file or stdout from a thread of its own.

pub mod framed;
pub mod gather;
pub mod index;
mod index_text;
pub mod layout;
pub mod layout_check;
pub mod owner;
pub mod report;
pub mod spool;
pub mod stream;
