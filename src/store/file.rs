//! Storing a finished local file, such as a rendered copy, as an object:
//! one read that feeds the staged write and the SM3 its manifest needs.

use std::io::{self, Read, Write};
use std::path::Path;

use sm3::{Digest, Sm3};

use super::{ObjectInfo, ObjectStore, StoreError, Tier};

/// Read size; large enough that the per-call cost is negligible.
const BUFFER_BYTES: usize = 1 << 20;

/// An object stored from a local file, with what its manifest records.
pub struct StoredFile {
    pub info: ObjectInfo,
    pub sm3: String,
    pub bytes: u64,
}

/// Stores the file at `path` under `tier`/`key`; the store's commit checks
/// the bytes against `sha256`. Read and write errors go through `io`, so
/// that each caller names the file in its own error type.
pub fn store_file<E: From<StoreError>>(
    store: &dyn ObjectStore,
    path: &Path,
    tier: Tier,
    key: &str,
    sha256: &str,
    io: impl Fn(io::Error) -> E,
) -> Result<StoredFile, E> {
    let mut staged = store.stage()?;
    let mut file = std::fs::File::open(path).map_err(&io)?;
    let mut sm3 = Sm3::default();
    let mut buffer = vec![0u8; BUFFER_BYTES];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(&io)?;
        if n == 0 {
            break;
        }
        sm3.update(&buffer[..n]);
        staged.write_all(&buffer[..n]).map_err(&io)?;
        bytes += n as u64;
    }
    let info = staged.commit(tier, key, sha256)?;
    Ok(StoredFile {
        info,
        sm3: hex::encode(sm3.finalize()),
        bytes,
    })
}
