//! The one error type of the GGUF crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing a GGUF file.
///
/// Variants carry the value at fault and, for parse errors, the byte offset
/// where the problem was found, so a message always points at the cause.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file (magic {found:02x?} at offset 0, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: [u8; 4] },
    #[error("{path}: big-endian GGUF files are not supported (version field reads {raw:#010x} at offset 4)")]
    BigEndian { path: PathBuf, raw: u32 },
    #[error("{path}: GGUF version {version} is not supported (only versions 2 and 3; version 1 is obsolete)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path}: file ends at offset {offset} while reading {what} ({needed} more bytes needed, {left} left)")]
    Truncated { path: PathBuf, offset: u64, what: String, needed: u64, left: u64 },
    #[error("{path}: {what} at offset {offset} is {value}, more than the {left} bytes left in the file could hold")]
    CountTooLarge { path: PathBuf, offset: u64, what: String, value: u64, left: u64 },
    #[error("{path}: string at offset {offset} is not valid UTF-8")]
    BadUtf8 { path: PathBuf, offset: u64 },
    #[error("{path}: unknown metadata value type {type_id} for key \"{key}\" at offset {offset}")]
    UnknownValueType { path: PathBuf, key: String, type_id: u32, offset: u64 },
    #[error("{path}: arrays nested deeper than {max} levels for key \"{key}\" at offset {offset}")]
    NestingTooDeep { path: PathBuf, key: String, max: usize, offset: u64 },
    #[error("{path}: duplicate metadata key \"{key}\" at offset {offset}")]
    DuplicateKey { path: PathBuf, key: String, offset: u64 },
    #[error("{path}: duplicate tensor name \"{name}\" at offset {offset}")]
    DuplicateTensor { path: PathBuf, name: String, offset: u64 },
    #[error("{path}: general.alignment = {value} at offset {offset} is not a power of two that fits in u32")]
    BadAlignment { path: PathBuf, value: String, offset: u64 },
    #[error("{path}: tensor \"{name}\" has {n_dims} dimensions at offset {offset} (at most 4 are allowed)")]
    TooManyDims { path: PathBuf, name: String, n_dims: u32, offset: u64 },
    #[error("{path}: tensor \"{name}\" has dimension {index} = {value} at offset {offset} ({why})")]
    BadDim { path: PathBuf, name: String, index: usize, value: u64, offset: u64, why: &'static str },
    #[error("{path}: tensor \"{name}\" has unknown type id {type_id} at offset {offset}")]
    UnknownTensorType { path: PathBuf, name: String, type_id: u32, offset: u64 },
    #[error("{path}: tensor \"{name}\" of type {ty} has first dimension {ne0} at offset {offset}, not a multiple of its block size {block}")]
    NotBlockMultiple { path: PathBuf, name: String, ty: &'static str, ne0: u64, block: u64, offset: u64 },
    #[error("{path}: tensor \"{name}\" data offset {value} (field at offset {offset}) is not a multiple of the alignment {alignment}")]
    MisalignedTensor { path: PathBuf, name: String, value: u64, alignment: u64, offset: u64 },
    #[error("{path}: tensor \"{name}\" bytes {start}..{end} reach past the end of the file ({file_len} bytes)")]
    TensorPastEnd { path: PathBuf, name: String, start: u64, end: u64, file_len: u64 },
    #[error("{path}: tensor \"{name}\" bytes {start}..{end} overlap tensor \"{other}\"")]
    TensorOverlap { path: PathBuf, name: String, other: String, start: u64, end: u64 },
    #[error("{path}: no tensor named \"{name}\"")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: no metadata key \"{key}\"")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: metadata key \"{key}\" has type {actual}, expected {expected}")]
    WrongType { path: PathBuf, key: String, expected: &'static str, actual: String },
    #[error("{path}: metadata key \"{key}\" value {value} does not fit in {expected}")]
    OutOfRange { path: PathBuf, key: String, value: String, expected: &'static str },
    #[error("writing GGUF: {0}")]
    Write(String),
}

/// Shorthand result type of this crate.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
