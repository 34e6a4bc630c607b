//! A Parquet object as the parquet crate's page-by-page reader sees it ([`ChunkReader`]):
//! each selected column chunk is one ranged `GET`, streamed and consumed forward a page at a
//! time. A row group's chunks are requested together when the first of them is read, so their
//! requests wait side by side; what is held is about a page per column (plus what the
//! connections buffer), never a row group, so memory follows the batch size, not the file.
//! A small row group (at most [`WHOLE`] of selected chunks) is fetched whole instead: fewer
//! requests, for less memory than a batch.

use std::collections::VecDeque;
use std::io::Read;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use parquet::errors::{ParquetError, Result};
use parquet::file::reader::{ChunkReader, Length};

use crate::objects::{Blocking, Chunks, ObjectsError};

/// What a read outside every selected chunk (none is expected) fetches at a time.
const ASIDE: u64 = 64 * 1024;

/// A row group whose selected chunks are no larger than this is fetched whole: a few requests
/// instead of one per column, for at most this much memory (less than a batch of 100,000 rows
/// of ten numeric columns).
pub const WHOLE: u64 = 8 * 1024 * 1024;

#[derive(Clone)]
pub struct Streamed {
    obj: Blocking,
    /// Row groups with at most this many selected bytes are fetched whole.
    whole: u64,
    state: Arc<Mutex<State>>,
}

struct State {
    /// The selected column chunks of each row group, and whether they were requested.
    groups: Vec<(Vec<Range<u64>>, bool)>,
    /// Chunks being read; one leaves when its last byte is taken.
    open: Vec<Chunk>,
}

struct Chunk {
    range: Range<u64>,
    /// The object offset of `parts`' first byte.
    at: u64,
    /// Bytes arrived and not yet taken, in order.
    parts: VecDeque<Bytes>,
    stream: Chunks,
}

impl Chunk {
    fn buffered_end(&self) -> u64 {
        self.at + self.parts.iter().map(|p| p.len() as u64).sum::<u64>()
    }

    /// Pull until `end` (at most the chunk's end) has arrived.
    fn fill(&mut self, obj: &Blocking, end: u64) -> std::result::Result<(), ObjectsError> {
        let end = end.min(self.range.end);
        let mut have = self.buffered_end();
        while have < end {
            match obj.pull(&mut self.stream) {
                Some(Ok(b)) => {
                    have += b.len() as u64;
                    self.parts.push_back(b);
                }
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(ObjectsError::Failed {
                        url: obj.object().shown.clone(),
                        reason: format!(
                            "a range ended at byte {have}, short of {} (truncated?)",
                            self.range.end
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Drop what lies before `pos`.
    fn skip_to(&mut self, pos: u64) {
        while let Some(first) = self.parts.front_mut() {
            let len = first.len() as u64;
            if self.at + len <= pos {
                self.at += len;
                self.parts.pop_front();
            } else {
                let cut = (pos.saturating_sub(self.at)) as usize;
                let _ = first.split_to(cut);
                self.at += cut as u64;
                return;
            }
        }
        self.at = self.at.max(pos);
    }
}

impl Streamed {
    /// `groups`: for each row group, the byte ranges of the column chunks that will be read.
    /// `whole`: the size up to which a group is fetched whole ([`WHOLE`]).
    pub fn new(obj: Blocking, groups: Vec<Vec<Range<u64>>>, whole: u64) -> Streamed {
        Streamed {
            obj,
            whole,
            state: Arc::new(Mutex::new(State {
                groups: groups.into_iter().map(|g| (g, false)).collect(),
                open: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a decoder panicked mid-read; the reader is then marked
        // damaged and never read again, so its state may be taken as it is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open chunk that holds `pos`, requesting its row group's chunks if they were not.
    fn chunk<'a>(
        &self,
        state: &'a mut State,
        pos: u64,
    ) -> std::result::Result<Option<&'a mut Chunk>, ObjectsError> {
        let held = |s: &State| {
            s.open
                .iter()
                .position(|c| c.range.contains(&pos) && c.at <= pos)
        };
        if held(state).is_none() {
            let group = state
                .groups
                .iter()
                .position(|(g, asked)| !asked && g.iter().any(|r| r.contains(&pos)));
            if let Some(g) = group {
                state.groups[g].1 = true;
                let ranges = state.groups[g].0.clone();
                let opened = self.open_group(&ranges)?;
                state.open.extend(ranges.into_iter().zip(opened).map(
                    |(range, (parts, stream))| Chunk {
                        at: range.start,
                        range,
                        parts,
                        stream,
                    },
                ));
            }
        }
        Ok(held(state).map(|i| &mut state.open[i]))
    }

    /// A row group's chunks: a small group fetched whole (adjacent chunks in one request), a
    /// larger one streamed, a request per chunk.
    fn open_group(
        &self,
        ranges: &[Range<u64>],
    ) -> std::result::Result<Vec<(VecDeque<Bytes>, Chunks)>, ObjectsError> {
        let bytes: u64 = ranges.iter().map(|r| r.end - r.start).sum();
        if bytes <= self.whole {
            let got = self.obj.ranges(ranges)?;
            let ended = || futures::stream::empty().boxed();
            return Ok(got
                .into_iter()
                .map(|b| (VecDeque::from([b]), ended()))
                .collect());
        }
        let streams = self.obj.streams(ranges)?;
        Ok(streams.into_iter().map(|s| (VecDeque::new(), s)).collect())
    }

    /// The bytes from `pos` on that have arrived, at least one unless the chunk has ended;
    /// `None` when no open chunk holds `pos`.
    fn peek(&self, pos: u64) -> std::result::Result<Option<Bytes>, ObjectsError> {
        let mut state = self.lock();
        let Some(chunk) = self.chunk(&mut state, pos)? else {
            return Ok(None);
        };
        chunk.fill(&self.obj, pos + 1)?;
        let mut at = chunk.at;
        for p in &chunk.parts {
            let end = at + p.len() as u64;
            if pos < end {
                return Ok(Some(p.slice((pos - at) as usize..)));
            }
            at = end;
        }
        Ok(Some(Bytes::new()))
    }

    /// `len` bytes from `pos`, taken: the chunk forgets them and everything before.
    fn take(&self, pos: u64, len: usize) -> std::result::Result<Option<Bytes>, ObjectsError> {
        let mut state = self.lock();
        let Some(chunk) = self.chunk(&mut state, pos)? else {
            return Ok(None);
        };
        let end = pos + len as u64;
        if end > chunk.range.end {
            return Ok(None);
        }
        chunk.fill(&self.obj, end)?;
        chunk.skip_to(pos);
        let got = match chunk.parts.front_mut() {
            Some(first) if first.len() >= len => first.split_to(len),
            _ => {
                let mut whole = BytesMut::with_capacity(len);
                while whole.len() < len {
                    let Some(mut p) = chunk.parts.pop_front() else {
                        break;
                    };
                    let want = len - whole.len();
                    if p.len() > want {
                        whole.extend_from_slice(&p.split_to(want));
                        chunk.parts.push_front(p);
                    } else {
                        whole.extend_from_slice(&p);
                    }
                }
                whole.freeze()
            }
        };
        chunk.at = end;
        if chunk.at >= chunk.range.end {
            state.open.retain(|c| c.at < c.range.end);
        }
        Ok(Some(got))
    }

    /// A read outside the streamed chunks: fetched by itself.
    fn aside(&self, pos: u64, len: u64) -> std::result::Result<Bytes, ObjectsError> {
        let end = (pos + len).min(self.obj.object().size());
        let mut got = self.obj.ranges(std::slice::from_ref(&(pos..end)))?;
        Ok(got.pop().unwrap_or_default())
    }
}

fn external(e: ObjectsError) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl Length for Streamed {
    fn len(&self) -> u64 {
        self.obj.object().size()
    }
}

impl ChunkReader for Streamed {
    type T = PageRead;

    fn get_read(&self, start: u64) -> Result<PageRead> {
        Ok(PageRead {
            src: self.clone(),
            pos: start,
            current: Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        match self.take(start, length).map_err(external)? {
            Some(b) => Ok(b),
            None => self.aside(start, length as u64).map_err(external),
        }
    }
}

/// Reads forward from an offset without taking: a page header is read through it, and then
/// its page is taken with [`ChunkReader::get_bytes`].
pub struct PageRead {
    src: Streamed,
    pos: u64,
    current: Bytes,
}

impl Read for PageRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.current.is_empty() {
            self.current = match self.src.peek(self.pos) {
                Ok(Some(b)) => Ok(b),
                Ok(None) => self.src.aside(self.pos, ASIDE),
                Err(e) => Err(e),
            }
            .map_err(std::io::Error::other)?;
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        self.pos += n as u64;
        Ok(n)
    }
}
