//! Checkpoint files of the trackers kept beside the SLO checkpoint (incidents,
//! deployments): one way to write them and one way to refuse a bad one.
//!
//! A file is one header line, `cerflow-<kind>-checkpoint format=<n> crc32=<hex> len=<bytes>`,
//! then the state as JSON. [`write`] goes through a temporary file, fsync and rename, so a
//! crash leaves the old file or the new one, never half of one. [`read`] refuses a file of
//! another kind or format, and one whose body does not have the length or checksum of its
//! header (cut short or corrupt), with an error for the caller to log; it never panics.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

fn magic(kind: &str) -> String {
    format!("cerflow-{kind}-checkpoint")
}

/// The temporary file beside `path` (`slo.incidents` -> `slo.incidents.tmp`): each
/// checkpoint has its own, so two trackers writing at once do not share one.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// `state` as the bytes of checkpoint `kind` in `format`: the header line, then the JSON
/// body. Also the value of a journey's record in the Kafka changelog (see `kstate`).
pub fn encode<T: Serialize>(kind: &str, format: u32, state: &T) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_vec(state).map_err(std::io::Error::other)?;
    let crc = crc32fast::hash(&body);
    let mut out = format!(
        "{} format={format} crc32={crc:08x} len={}\n",
        magic(kind),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Writes `state` as checkpoint `kind` in `format`, atomically; directories are created.
pub fn write<T: Serialize>(path: &Path, kind: &str, format: u32, state: &T) -> std::io::Result<()> {
    let data = encode(kind, format, state)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = tmp_path(path);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads checkpoint `kind` written in `format` by [`write`].
pub fn read<T: DeserializeOwned>(path: &Path, kind: &str, format: u32) -> Result<T, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    decode(&data, kind, format)
}

/// Decodes bytes made by [`encode`], refusing them as [`read`] refuses a file.
pub fn decode<T: DeserializeOwned>(data: &[u8], kind: &str, format: u32) -> Result<T, String> {
    let nl = data
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| format!("not a {kind} checkpoint: no header line"))?;
    let header = std::str::from_utf8(&data[..nl])
        .map_err(|_| format!("not a {kind} checkpoint: the header is not text"))?;
    let body = &data[nl + 1..];
    let mut parts = header.split(' ');
    if parts.next() != Some(magic(kind).as_str()) {
        return Err(format!("not a {kind} checkpoint"));
    }
    let mut field = |name: &str| {
        parts
            .next()
            .and_then(|p| p.strip_prefix(name))
            .ok_or_else(|| format!("{kind} checkpoint header has no {name}"))
    };
    let got_format = field("format=")?;
    if got_format != format.to_string() {
        return Err(format!(
            "unknown {kind} checkpoint format {got_format} (this build reads {format})"
        ));
    }
    let crc = u32::from_str_radix(field("crc32=")?, 16)
        .map_err(|_| format!("{kind} checkpoint header has a bad crc32"))?;
    let len: usize = field("len=")?
        .parse()
        .map_err(|_| format!("{kind} checkpoint header has a bad len"))?;
    if body.len() != len {
        return Err(format!(
            "{kind} checkpoint is {} bytes, its header says {len}: cut short or appended to",
            body.len()
        ));
    }
    if crc32fast::hash(body) != crc {
        return Err(format!(
            "{kind} checkpoint checksum mismatch: the file is corrupt"
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid {kind} checkpoint body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    type State = BTreeMap<String, u64>;

    fn saved(dir: &Path) -> (PathBuf, State) {
        let path = dir.join("sub/slo.things");
        let state: State = [("checkout".to_string(), 7), ("login".to_string(), 3)].into();
        write(&path, "things", 2, &state).unwrap();
        (path, state)
    }

    #[test]
    fn what_is_written_is_read_back_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (path, state) = saved(dir.path());
        assert_eq!(read::<State>(&path, "things", 2), Ok(state));
        // The body is `{"checkout":7,"login":3}`: 24 bytes.
        let text = std::fs::read_to_string(&path).unwrap();
        let header = text.lines().next().unwrap();
        let crc = crc32fast::hash(br#"{"checkout":7,"login":3}"#);
        assert_eq!(
            header,
            format!("cerflow-things-checkpoint format=2 crc32={crc:08x} len=24")
        );
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["slo.things"]);
    }

    #[test]
    fn another_kind_or_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = saved(dir.path());
        assert_eq!(
            read::<State>(&path, "other", 2),
            Err("not a other checkpoint".to_string())
        );
        assert_eq!(
            read::<State>(&path, "things", 1),
            Err("unknown things checkpoint format 2 (this build reads 1)".to_string())
        );
    }

    #[test]
    fn a_cut_short_or_corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = saved(dir.path());
        let data = std::fs::read(&path).unwrap();
        // Cut short: the last 5 of the body's 24 bytes are gone.
        std::fs::write(&path, &data[..data.len() - 5]).unwrap();
        assert_eq!(
            read::<State>(&path, "things", 2),
            Err(
                "things checkpoint is 19 bytes, its header says 24: cut short or appended to"
                    .to_string()
            )
        );
        // Same length, one digit changed (7 -> 8): only the checksum tells.
        let mut bad = data.clone();
        let at = bad.iter().rposition(|b| *b == b'7').unwrap();
        bad[at] = b'8';
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(
            read::<State>(&path, "things", 2),
            Err("things checkpoint checksum mismatch: the file is corrupt".to_string())
        );
        // A file with no header line at all (an older, headerless checkpoint).
        std::fs::write(&path, br#"{"format":1}"#).unwrap();
        assert_eq!(
            read::<State>(&path, "things", 2),
            Err("not a things checkpoint: no header line".to_string())
        );
    }
}
