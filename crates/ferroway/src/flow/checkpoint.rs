//! The file a flow over a connector source keeps across restarts: per partition, the
//! watermark up to which every window's results were written. A restarted flow replays what
//! its source had not acknowledged; windows this file says are final are not emitted again
//! from that partial replay.
//!
//! Text, one line per partition after a header: `ferroway-flow-checkpoint 1` then
//! `partition <index> <finalized>`. Written to a temporary file, synced, then renamed.

use std::io::Write;
use std::path::Path;

use super::FlowError;

const HEADER: &str = "ferroway-flow-checkpoint 1";

fn io(path: &Path, source: std::io::Error) -> FlowError {
    FlowError::Checkpoint {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, line: usize, what: &str) -> FlowError {
    io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line {line}: {what} (not a flow checkpoint?)"),
        ),
    )
}

/// The finalized watermark of every partition, if the file exists.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<i64>>, FlowError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(corrupt(path, 1, "expected the header `ferroway-flow-checkpoint 1`"));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let mut f = line.split(' ');
        let (Some("partition"), Some(p), Some(wm), None) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(corrupt(path, i + 2, "expected `partition <index> <watermark>`"));
        };
        if p.parse::<usize>().ok() != Some(out.len()) {
            return Err(corrupt(path, i + 2, "partitions out of order"));
        }
        out.push(
            wm.parse::<i64>()
                .map_err(|_| corrupt(path, i + 2, "the watermark is not an integer"))?,
        );
    }
    Ok(Some(out))
}

/// Replaces the file with `finalized`, durably. Watermarks only move forward: a write that
/// finishes late (its flow stopped while it ran) cannot take the file back.
pub(crate) fn write(path: &Path, finalized: &[i64]) -> Result<(), FlowError> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut finalized = finalized.to_vec();
    if let Some(on_disk) = read(path)?.filter(|d| d.len() == finalized.len()) {
        for (f, d) in finalized.iter_mut().zip(on_disk) {
            *f = (*f).max(d);
        }
    }
    let mut text = format!("{HEADER}\n");
    for (p, wm) in finalized.iter().enumerate() {
        text.push_str(&format!("partition {p} {wm}\n"));
    }
    // A name of its own: a write of an earlier run of this process may still be finishing.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    result.map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_clear_errors() {
        let dir = std::env::temp_dir().join(format!("ferroway-flow-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flow.ckpt");
        assert_eq!(read(&path).unwrap(), None);
        write(&path, &[i64::MIN, 42, -7]).unwrap();
        assert_eq!(read(&path).unwrap(), Some(vec![i64::MIN, 42, -7]));
        std::fs::write(&path, "something else\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("flow.ckpt") && e.contains("line 1"), "{e}");
        std::fs::write(&path, format!("{HEADER}\npartition 0 x\n")).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("not an integer"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
