//! Reads the index of MP4 and QuickTime files: every track from `moov` and
//! every movie fragment (`moof`), with each sample's DTS, PTS, duration,
//! size, offset and sync flag, seeking past `mdat` so that no media payload
//! is read.
//!
//! The parser is written by hand because `mp4-atom` rejects a whole `moov`
//! when one child box is damaged and `mp4parse` reads through `mdat` instead
//! of seeking, while a damaged evidence file must still yield every track it
//! can. Every count and offset in the file is untrusted. Tables are bounded
//! by the bytes of their box and sample counts by [`MAX_SAMPLES_PER_FILE`].
//! The box walk nests only as deep as the fixed `moov/trak/mdia/minf/stbl`
//! path, so no input can recurse, loop without progress or overflow.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::index::{
    ContainerFormat, ContainerIndex, Edit, IndexError, IndexProblem, ProblemLog, Sample,
    TrackIndex, TrackKind,
};
use crate::i18n::Text;

/// Largest `moov` loaded into memory. Sample tables of a day-long recording
/// take tens of MiB, so anything far beyond that is a damaged size field.
const MAX_MOOV_BYTES: u64 = 256 << 20;

/// Largest `moof` loaded into memory. Real fragments are a few KiB.
const MAX_MOOF_BYTES: u64 = 64 << 20;

/// Most samples located per file, stored or not: 2^24 samples is 24 hours
/// of 60 fps video with AAC audio twice over, and at most 640 MiB of
/// [`Sample`]s. Larger counts come from damaged tables or from PCM audio
/// counted per frame, and would cost memory and time out of proportion.
// NOTE: a long QuickTime file with uncompressed PCM audio, whose tables count
// every audio frame as a sample, can reach this cap and is then reported as
// malformed with its later samples unlisted.
const MAX_SAMPLES_PER_FILE: u64 = 1 << 24;

/// Most tracks indexed per file. Cameras write fewer than ten.
const MAX_TRACKS: usize = 256;

/// Seconds from the MP4 epoch (1904-01-01 UTC) to the UNIX epoch.
const MP4_EPOCH_TO_UNIX_SECONDS: i64 = 2_082_844_800;

/// Read buffer for the top-level walk: large enough that the many small box
/// headers of a fragmented file come from one read.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// `sample_is_non_sync_sample` bit of the ISO/IEC 14496-12 sample flags.
const SAMPLE_FLAG_NON_SYNC: u32 = 0x0001_0000;

/// tfhd flags (ISO/IEC 14496-12 §8.8.7).
const TFHD_BASE_DATA_OFFSET: u32 = 0x00_0001;
const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x00_0002;
const TFHD_DEFAULT_DURATION: u32 = 0x00_0008;
const TFHD_DEFAULT_SIZE: u32 = 0x00_0010;
const TFHD_DEFAULT_FLAGS: u32 = 0x00_0020;
const TFHD_DURATION_IS_EMPTY: u32 = 0x01_0000;
const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

/// trun flags (ISO/IEC 14496-12 §8.8.8).
const TRUN_DATA_OFFSET: u32 = 0x000_001;
const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x000_004;
const TRUN_SAMPLE_DURATION: u32 = 0x000_100;
const TRUN_SAMPLE_SIZE: u32 = 0x000_200;
const TRUN_SAMPLE_FLAGS: u32 = 0x000_400;
const TRUN_SAMPLE_CTO: u32 = 0x000_800;

const NO_MOOV_REASON_ZH: &str = "没有 moov 索引 box：录像未正常结束（断电或录制中关机）";
const NO_MOOV_REASON: &str = "no moov index box: the recording was not finalized (power loss or the camera was switched off while recording)";

type FourCc = [u8; 4];

/// Reads the index of the MP4/QuickTime file at `path` from the already
/// opened `file`.
pub(crate) fn read_mp4_index(path: &Path, file: File) -> Result<ContainerIndex, IndexError> {
    let io_error = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_size = file.metadata().map_err(io_error)?.len();
    let mut reader = BoxReader::new(file).map_err(io_error)?;
    let mut log = ProblemLog::default();

    let top = walk_top_level(&mut reader, file_size, &mut log).map_err(io_error)?;
    if let Some(reason) = top.unparseable {
        return Err(IndexError::Unparseable {
            path: path.to_path_buf(),
            reason,
        });
    }

    let Some(movie) = top.movie else {
        log.push(IndexProblem::NotFinalized {
            reason: Text::new(NO_MOOV_REASON_ZH, NO_MOOV_REASON),
        });
        return Ok(ContainerIndex {
            format: ContainerFormat::Mp4,
            brand: top.brand,
            creation_time: None,
            movie_timescale: None,
            is_fragmented: !top.fragments.is_empty(),
            file_size,
            tracks: Vec::new(),
            problems: log.into_problems(),
        });
    };

    let mut tracks = movie.tracks;
    let mut past_end = movie.samples_past_end;
    let mut budget = top.budget;
    apply_fragments(
        &mut tracks,
        &mut past_end,
        &movie.track_extends,
        &top.fragments,
        file_size,
        &mut budget,
        &mut log,
    );
    for (track, past_end) in tracks.iter_mut().zip(past_end) {
        finish_track(track, past_end, file_size, &mut log);
    }

    Ok(ContainerIndex {
        format: ContainerFormat::Mp4,
        brand: top.brand,
        creation_time: movie.creation_time,
        movie_timescale: movie.timescale,
        is_fragmented: movie.has_mvex || !top.fragments.is_empty(),
        file_size,
        tracks,
        problems: log.into_problems(),
    })
}

/// Reports the samples left out for lying past the end of the file, and
/// empties a track whose timescale is zero.
fn finish_track(track: &mut TrackIndex, past_end: u64, file_size: u64, log: &mut ProblemLog) {
    if track.timescale == 0 {
        // A missing mdhd was already reported where it was found.
        if track.declared_duration.is_some() {
            log.malformed(
                format!(
                    "轨道 {}（ID {}）的 mdhd 时间刻度为 0，其时间无法换算为秒；该轨道列出但不含样本",
                    track.index, track.id
                ),
                format!(
                    "track {} (ID {}) has a timescale of 0 in mdhd, so its times cannot be converted to seconds; it is listed without samples",
                    track.index, track.id
                ),
            );
        }
        track.samples = Vec::new();
        return;
    }

    if past_end > 0 {
        log.push(IndexProblem::Truncated {
            track: track.index,
            declared_samples: track.declared_samples,
            present_samples: track.samples.len() as u64,
            data_end: file_size,
        });
    }
}

// ---------------------------------------------------------------------------
// Top-level walk
// ---------------------------------------------------------------------------

/// Result of walking the top-level boxes.
struct TopLevel {
    brand: Option<String>,
    movie: Option<Movie>,
    fragments: Vec<FragmentBox>,
    /// Set when the very first box header is invalid, so the file has no box
    /// structure at all.
    unparseable: Option<Text>,
    /// Remainder of [`MAX_SAMPLES_PER_FILE`] after `moov`.
    budget: SampleBudget,
}

/// A `moof` box loaded for parsing after the walk, once `trex` defaults from
/// `moov` are known wherever `moov` sits.
struct FragmentBox {
    offset: u64,
    body_offset: u64,
    body: Vec<u8>,
    /// The box runs past the end of the file.
    truncated: bool,
}

/// File reader that tracks its position so that short forward seeks stay
/// inside the read buffer.
struct BoxReader {
    inner: BufReader<File>,
    position: u64,
}

impl BoxReader {
    fn new(mut file: File) -> io::Result<BoxReader> {
        file.seek(SeekFrom::Start(0))?;
        Ok(BoxReader {
            inner: BufReader::with_capacity(READ_BUFFER_BYTES, file),
            position: 0,
        })
    }

    fn seek_to(&mut self, offset: u64) -> io::Result<()> {
        if offset == self.position {
            return Ok(());
        }
        let delta = i128::from(offset) - i128::from(self.position);
        match i64::try_from(delta) {
            Ok(delta) => self.inner.seek_relative(delta)?,
            Err(_) => {
                self.inner.seek(SeekFrom::Start(offset))?;
            }
        }
        self.position = offset;
        Ok(())
    }

    /// Reads up to `length` bytes at `offset`, fewer only at the end of the file.
    fn read_at(&mut self, offset: u64, length: usize) -> io::Result<Vec<u8>> {
        self.seek_to(offset)?;
        let mut data = Vec::with_capacity(length);
        let read = (&mut self.inner)
            .take(length as u64)
            .read_to_end(&mut data)?;
        self.position += read as u64;
        Ok(data)
    }
}

/// Walks the top-level boxes, loading `ftyp`, `moov` and every `moof` and
/// seeking past everything else.
fn walk_top_level(
    reader: &mut BoxReader,
    file_size: u64,
    log: &mut ProblemLog,
) -> io::Result<TopLevel> {
    let mut top = TopLevel {
        brand: None,
        movie: None,
        fragments: Vec::new(),
        unparseable: None,
        budget: SampleBudget {
            remaining: MAX_SAMPLES_PER_FILE,
        },
    };
    let mut offset = 0u64;

    while offset < file_size {
        let available = file_size - offset;
        let head = reader.read_at(offset, 16)?;
        if head.len() < 8 {
            if head.iter().any(|&b| b != 0) {
                log.malformed(
                    format!("文件在偏移 {offset} 处只剩 {available} 字节，不足一个 box 头：文件被截断"),
                    format!("the file ends with {available} bytes at offset {offset}, too few for a box header: the file is truncated"),
                );
            }
            break;
        }

        let box_type: FourCc = [head[4], head[5], head[6], head[7]];
        let name = fourcc_text(&box_type);
        let (size, header_len) = match read_u32(&head, 0) {
            0 => (available, 8u64),
            1 if head.len() < 16 => {
                log.malformed(
                    format!("偏移 {offset} 处的 {name} box 声明了 64 位大小，但文件先结束了：文件被截断"),
                    format!("the {name} box at offset {offset} announces a 64-bit size but the file ends first: the file is truncated"),
                );
                break;
            }
            1 => (read_u64(&head, 8), 16u64),
            size => (u64::from(size), 8u64),
        };
        if size < header_len {
            let reason = Text::new(
                format!("偏移 {offset} 处的 {name} box 声明大小为 {size} 字节，小于其自身 {header_len} 字节的头部，因此无法找到其后的 box"),
                format!("the {name} box at offset {offset} declares a size of {size} bytes, smaller than its own {header_len}-byte header, so the boxes after it cannot be found"),
            );
            if offset == 0 {
                top.unparseable = Some(reason);
            } else {
                log.push(IndexProblem::Malformed { reason });
            }
            break;
        }

        let end = offset.saturating_add(size);
        let truncated = end > file_size;
        let body_offset = offset + header_len;
        let body_available = end.min(file_size).saturating_sub(body_offset);

        match &box_type {
            b"ftyp" => {
                let body = reader.read_at(body_offset, 4)?;
                if body.len() == 4 {
                    top.brand = Some(fourcc_text(&[body[0], body[1], body[2], body[3]]));
                }
            }
            b"moov" if top.movie.is_some() => log.malformed(
                format!("偏移 {offset} 处的第二个 moov box 已忽略，使用第一个"),
                format!("a second moov box at offset {offset} was ignored; the first one is used"),
            ),
            b"moov" if body_available > MAX_MOOV_BYTES => log.malformed(
                format!("偏移 {offset} 处的 moov box 有 {body_available} 字节，超过本读取器最多加载的 {MAX_MOOV_BYTES} 字节；已忽略"),
                format!("the moov box at offset {offset} is {body_available} bytes, more than the {MAX_MOOV_BYTES} bytes this reader loads; it was ignored"),
            ),
            b"moov" => {
                let body = reader.read_at(body_offset, body_available as usize)?;
                let movie = parse_moov(&body, body_offset, file_size, &mut top.budget, log);
                top.movie = Some(movie);
            }
            b"moof" if body_available > MAX_MOOF_BYTES => log.malformed(
                format!("偏移 {offset} 处的 moof box 有 {body_available} 字节，超过本读取器最多加载的 {MAX_MOOF_BYTES} 字节；已忽略"),
                format!("the moof box at offset {offset} is {body_available} bytes, more than the {MAX_MOOF_BYTES} bytes this reader loads; it was ignored"),
            ),
            b"moof" => {
                let body = reader.read_at(body_offset, body_available as usize)?;
                top.fragments.push(FragmentBox {
                    offset,
                    body_offset,
                    body,
                    truncated,
                });
            }
            _ => {}
        }

        if truncated {
            log.malformed(
                format!("偏移 {offset} 处的 {name} box 声明 {size} 字节，但文件在它开始后 {available} 字节处就结束了：文件被截断"),
                format!("the {name} box at offset {offset} declares {size} bytes but the file ends {available} bytes after its start: the file is truncated"),
            );
            break;
        }
        offset = end;
    }
    Ok(top)
}

// ---------------------------------------------------------------------------
// Byte and box access inside loaded boxes
// ---------------------------------------------------------------------------

fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn read_u64(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&data[at..at + 8]);
    u64::from_be_bytes(bytes)
}

/// Prints a fourcc as text, escaping bytes that are not printable ASCII so
/// that fuzzed types stay readable in a report.
fn fourcc_text(code: &FourCc) -> String {
    code.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// Bounds-checked big-endian reader over a box body. Every read returns
/// None past the end instead of panicking.
struct Cursor<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor { data, position: 0 }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.position
    }

    fn bytes(&mut self, count: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(count)?;
        let slice = self.data.get(self.position..end)?;
        self.position = end;
        Some(slice)
    }

    fn skip(&mut self, count: usize) -> Option<()> {
        self.bytes(count).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes(4).map(|b| read_u32(b, 0))
    }

    fn i32(&mut self) -> Option<i32> {
        self.u32().map(|v| v as i32)
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| read_u64(b, 0))
    }

    fn fourcc(&mut self) -> Option<FourCc> {
        self.bytes(4).map(|b| [b[0], b[1], b[2], b[3]])
    }

    /// Reads the version byte and 24-bit flags of a full box.
    fn version_and_flags(&mut self) -> Option<(u8, u32)> {
        let word = self.u32()?;
        Some(((word >> 24) as u8, word & 0x00ff_ffff))
    }
}

/// Names a box in both languages, for messages about its children.
fn box_label(name: &str) -> Text {
    Text::new(name, name)
}

/// A child box inside a loaded parent.
struct ChildBox<'a> {
    box_type: FourCc,
    body: &'a [u8],
    /// File offset of the child's header.
    offset: u64,
    /// File offset of the child's body.
    body_offset: u64,
}

/// Splits a loaded box body into its child boxes. A child that runs past its
/// parent is clamped and reported, and a size below the header ends the list
/// because nothing after it can be located.
fn child_boxes<'a>(
    data: &'a [u8],
    data_offset: u64,
    parent: &Text,
    log: &mut ProblemLog,
) -> Vec<ChildBox<'a>> {
    let mut children = Vec::new();
    let mut position = 0usize;
    while data.len() - position >= 8 {
        let offset = data_offset + position as u64;
        let box_type: FourCc = [
            data[position + 4],
            data[position + 5],
            data[position + 6],
            data[position + 7],
        ];
        let left = data.len() - position;
        let (size, header_len) = match read_u32(data, position) {
            0 => (left as u64, 8usize),
            1 if left < 16 => {
                let name = fourcc_text(&box_type);
                log.malformed(
                    format!(
                        "{zh} 内偏移 {offset} 处的 {name} box 声明了 64 位大小，但其所在的 box 先结束了",
                        zh = parent.zh
                    ),
                    format!(
                        "the {name} box at offset {offset} inside {en} announces a 64-bit size but {en} ends first",
                        en = parent.en
                    ),
                );
                break;
            }
            1 => (read_u64(data, position + 8), 16usize),
            size => (u64::from(size), 8usize),
        };
        if size < header_len as u64 {
            let name = fourcc_text(&box_type);
            log.malformed(
                format!(
                    "{zh} 内偏移 {offset} 处的 {name} box 声明大小为 {size} 字节，小于其头部；{zh} 的其余部分已跳过",
                    zh = parent.zh
                ),
                format!(
                    "the {name} box at offset {offset} inside {en} declares a size of {size} bytes, smaller than its header; the rest of {en} was skipped",
                    en = parent.en
                ),
            );
            break;
        }

        let body_start = position + header_len;
        let clamped = size > left as u64;
        let end = if clamped {
            data.len()
        } else {
            position + size as usize
        };
        children.push(ChildBox {
            box_type,
            body: &data[body_start..end],
            offset,
            body_offset: data_offset + body_start as u64,
        });
        if clamped {
            let name = fourcc_text(&box_type);
            log.malformed(
                format!(
                    "{zh} 内偏移 {offset} 处的 {name} box 声明 {size} 字节，但其所在的 box 从该处起只剩 {left} 字节；已读取现有部分",
                    zh = parent.zh
                ),
                format!(
                    "the {name} box at offset {offset} declares {size} bytes but {en} contains only {left} from there on; it was read as far as it goes",
                    en = parent.en
                ),
            );
            break;
        }
        position = end;
    }
    children
}

/// Returns the body of the first child of `box_type`, or None.
fn find_child<'a>(children: &[ChildBox<'a>], box_type: &FourCc) -> Option<&'a [u8]> {
    children
        .iter()
        .find(|c| &c.box_type == box_type)
        .map(|c| c.body)
}

/// Number of table entries that fit in the bytes left, capped by the
/// declared count. Every `Vec::with_capacity` of a table uses it.
fn fitting_entries(cursor: &Cursor, declared: u64, entry_bytes: usize) -> usize {
    let fit = cursor.remaining() / entry_bytes.max(1);
    usize::try_from(declared).map_or(fit, |declared| declared.min(fit))
}

// ---------------------------------------------------------------------------
// moov
// ---------------------------------------------------------------------------

/// Movie-level fields and tracks from `moov`.
struct Movie {
    timescale: Option<u32>,
    creation_time: Option<i64>,
    has_mvex: bool,
    track_extends: HashMap<u32, TrackExtends>,
    tracks: Vec<TrackIndex>,
    /// Per track, samples of the sample tables left out because their bytes
    /// run past the end of the file.
    samples_past_end: Vec<u64>,
}

/// `trex` defaults for the samples of one track's fragments.
#[derive(Debug, Clone, Copy, Default)]
struct TrackExtends {
    default_duration: u32,
    default_size: u32,
    default_flags: u32,
}

fn parse_moov(
    body: &[u8],
    body_offset: u64,
    file_size: u64,
    budget: &mut SampleBudget,
    log: &mut ProblemLog,
) -> Movie {
    let children = child_boxes(body, body_offset, &box_label("moov"), log);
    let mut movie = Movie {
        timescale: None,
        creation_time: None,
        has_mvex: false,
        track_extends: HashMap::new(),
        tracks: Vec::new(),
        samples_past_end: Vec::new(),
    };

    match find_child(&children, b"mvhd") {
        Some(mvhd) => parse_mvhd(mvhd, &mut movie, log),
        None => log.malformed(
            "moov 中没有 mvhd box，因此创建时间和编辑列表所用的影片时间刻度未知",
            "moov has no mvhd box, so the creation time and the movie timescale of the edit lists are unknown",
        ),
    }
    if children.iter().any(|c| &c.box_type == b"cmov") {
        log.malformed(
            "moov 经过压缩（cmov），本读取器不解压，其中的轨道未列出",
            "moov is compressed (cmov), which this reader does not decompress; its tracks are not listed",
        );
    }
    if let Some(mvex) = children.iter().find(|c| &c.box_type == b"mvex") {
        movie.has_mvex = true;
        parse_mvex(mvex.body, mvex.body_offset, &mut movie.track_extends, log);
    }

    let movie_timescale = movie.timescale.unwrap_or(0);
    for child in children.iter().filter(|c| &c.box_type == b"trak") {
        if movie.tracks.len() == MAX_TRACKS {
            log.malformed(
                format!("moov 包含超过 {MAX_TRACKS} 个轨道，其余轨道未列出"),
                format!("moov contains more than {MAX_TRACKS} tracks; the rest are not listed"),
            );
            break;
        }
        let index = movie.tracks.len();
        let (track, past_end) = parse_trak(child, index, movie_timescale, file_size, budget, log);
        movie.tracks.push(track);
        movie.samples_past_end.push(past_end);
    }
    movie
}

fn parse_mvhd(body: &[u8], movie: &mut Movie, log: &mut ProblemLog) {
    let mut cursor = Cursor::new(body);
    let parsed = (|| {
        let (version, _) = cursor.version_and_flags()?;
        if version == 1 {
            let creation = cursor.u64()?;
            cursor.skip(8)?;
            let timescale = cursor.u32()?;
            Some((creation, timescale))
        } else {
            let creation = u64::from(cursor.u32()?);
            cursor.skip(4)?;
            let timescale = cursor.u32()?;
            Some((creation, timescale))
        }
    })();
    let Some((creation, timescale)) = parsed else {
        log.malformed(
            "mvhd box 过短，容不下创建时间和时间刻度",
            "the mvhd box is too short to hold its creation time and timescale",
        );
        return;
    };

    // An unset camera clock writes 0, which is 1904-01-01 and stays visible
    // as -2082844800. Values beyond the i64 range only come from damage.
    movie.creation_time =
        i64::try_from(i128::from(creation) - i128::from(MP4_EPOCH_TO_UNIX_SECONDS)).ok();
    if timescale == 0 {
        log.malformed(
            "mvhd 声明的影片时间刻度为 0，因此编辑列表的时长无法换算为秒",
            "mvhd declares a movie timescale of 0, so edit list durations cannot be converted to seconds",
        );
    }
    movie.timescale = Some(timescale);
}

fn parse_mvex(
    body: &[u8],
    body_offset: u64,
    extends: &mut HashMap<u32, TrackExtends>,
    log: &mut ProblemLog,
) {
    for child in child_boxes(body, body_offset, &box_label("mvex"), log) {
        if &child.box_type != b"trex" {
            continue;
        }
        let mut cursor = Cursor::new(child.body);
        let parsed = (|| {
            cursor.version_and_flags()?;
            let track_id = cursor.u32()?;
            let _sample_description_index = cursor.u32()?;
            Some((
                track_id,
                TrackExtends {
                    default_duration: cursor.u32()?,
                    default_size: cursor.u32()?,
                    default_flags: cursor.u32()?,
                },
            ))
        })();
        match parsed {
            Some((track_id, defaults)) => {
                extends.insert(track_id, defaults);
            }
            None => log.malformed(
                format!(
                    "偏移 {} 处的 trex box 过短，其轨道的分片默认值按 0 处理",
                    child.offset
                ),
                format!(
                    "the trex box at offset {} is too short; its track's fragment defaults are taken as zero",
                    child.offset
                ),
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// trak
// ---------------------------------------------------------------------------

/// `tkhd` fields used by the index.
#[derive(Default)]
struct TrackHeader {
    track_id: u32,
    rotation: u32,
    width: u32,
    height: u32,
}

/// Parses one `trak`. Returns the track and the number of its samples left
/// out because their bytes run past the end of the file.
fn parse_trak(
    trak: &ChildBox,
    index: usize,
    movie_timescale: u32,
    file_size: u64,
    budget: &mut SampleBudget,
    log: &mut ProblemLog,
) -> (TrackIndex, u64) {
    let label = Text::new(format!("轨道 {index}"), format!("track {index}"));
    let children = child_boxes(trak.body, trak.body_offset, &label, log);

    let header = match find_child(&children, b"tkhd") {
        Some(body) => parse_tkhd(body).unwrap_or_else(|| {
            log.malformed(
                format!("{} 的 tkhd box 过短，其轨道 ID 未知", label.zh),
                format!(
                    "the tkhd box of {} is too short; its track ID is unknown",
                    label.en
                ),
            );
            TrackHeader::default()
        }),
        None => {
            log.malformed(
                format!("{} 没有 tkhd box，其轨道 ID 未知", label.zh),
                format!("{} has no tkhd box; its track ID is unknown", label.en),
            );
            TrackHeader::default()
        }
    };

    let mut track = TrackIndex {
        index,
        id: header.track_id,
        kind: TrackKind::Other,
        handler_type: String::new(),
        handler_name: None,
        codec: String::new(),
        timescale: 0,
        width: None,
        height: None,
        rotation: header.rotation,
        declared_duration: None,
        edits: Vec::new(),
        samples: Vec::new(),
        declared_samples: 0,
        continuity_errors: 0,
    };
    let label = Text::new(
        format!("轨道 {index}（ID {}）", header.track_id),
        format!("track {index} (ID {})", header.track_id),
    );

    if let Some(edts) = children.iter().find(|c| &c.box_type == b"edts") {
        let edts_children = child_boxes(edts.body, edts.body_offset, &box_label("edts"), log);
        if let Some(elst) = find_child(&edts_children, b"elst") {
            track.edits = parse_elst(elst, movie_timescale, &label, log);
        }
    }

    let Some(mdia) = children.iter().find(|c| &c.box_type == b"mdia") else {
        log.malformed(
            format!("{} 没有 mdia box，因此其时间和样本未知", label.zh),
            format!(
                "{} has no mdia box, so its timing and samples are unknown",
                label.en
            ),
        );
        return (track, 0);
    };
    let mdia_children = child_boxes(mdia.body, mdia.body_offset, &box_label("mdia"), log);

    match find_child(&mdia_children, b"mdhd").and_then(parse_mdhd) {
        Some((timescale, duration)) => {
            track.timescale = timescale;
            track.declared_duration = Some(duration);
        }
        None => log.malformed(
            format!("{} 没有可读的 mdhd box，因此其时间刻度未知", label.zh),
            format!(
                "{} has no readable mdhd box, so its timescale is unknown",
                label.en
            ),
        ),
    }

    match find_child(&mdia_children, b"hdlr").and_then(parse_hdlr) {
        Some((handler_type, handler_name)) => {
            track.kind = TrackKind::from_handler_type(&handler_type);
            track.handler_type = fourcc_text(&handler_type);
            track.handler_name = handler_name;
        }
        None => log.malformed(
            format!("{} 没有可读的 hdlr box，因此其轨道类型未知", label.zh),
            format!(
                "{} has no readable hdlr box, so its kind is unknown",
                label.en
            ),
        ),
    }

    let stbl = mdia_children
        .iter()
        .find(|c| &c.box_type == b"minf")
        .and_then(|minf| {
            let minf_children = child_boxes(minf.body, minf.body_offset, &box_label("minf"), log);
            minf_children
                .into_iter()
                .find(|c| &c.box_type == b"stbl")
                .map(|c| (c.body, c.body_offset))
        });
    let Some((stbl_body, stbl_offset)) = stbl else {
        log.malformed(
            format!("{} 没有 minf/stbl 样本表", label.zh),
            format!("{} has no minf/stbl sample table", label.en),
        );
        return (track, 0);
    };
    let stbl_children = child_boxes(stbl_body, stbl_offset, &box_label("stbl"), log);

    if let Some(entry) = find_child(&stbl_children, b"stsd").and_then(first_sample_entry) {
        track.codec = fourcc_text(&entry.format);
        if track.kind == TrackKind::Video {
            track.width = entry.width.filter(|&w| w > 0);
            track.height = entry.height.filter(|&h| h > 0);
        }
    } else {
        log.malformed(
            format!("{} 没有可读的 stsd 样本描述，因此其编码格式未知", label.zh),
            format!(
                "{} has no readable stsd sample description, so its codec is unknown",
                label.en
            ),
        );
    }
    if track.width.is_none() && header.width > 0 {
        track.width = Some(header.width);
    }
    if track.height.is_none() && header.height > 0 {
        track.height = Some(header.height);
    }

    let tables = read_sample_tables(&stbl_children, &label, log);
    let built = build_samples(&tables, file_size, budget, &label, log);
    track.samples = built.samples;
    track.declared_samples = built.declared;
    (track, built.past_end)
}

fn parse_tkhd(body: &[u8]) -> Option<TrackHeader> {
    let mut cursor = Cursor::new(body);
    let (version, _) = cursor.version_and_flags()?;
    if version == 1 {
        cursor.skip(16)?;
    } else {
        cursor.skip(8)?;
    }
    let track_id = cursor.u32()?;
    cursor.skip(4)?;
    cursor.skip(if version == 1 { 8 } else { 4 })?;
    // reserved[2], layer, alternate_group, volume, reserved
    cursor.skip(8 + 2 + 2 + 2 + 2)?;
    let mut matrix = [0i32; 9];
    for value in &mut matrix {
        *value = cursor.i32()?;
    }
    let width = cursor.u32()? >> 16;
    let height = cursor.u32()? >> 16;
    Some(TrackHeader {
        track_id,
        rotation: rotation_from_matrix(&matrix),
        width,
        height,
    })
}

/// Returns the clockwise display rotation of a `tkhd` matrix, rounded to a
/// right angle. The matrix is {a, b, u, c, d, v, x, y, w} with a = cos θ and
/// b = sin θ in 16.16 fixed point, so (a, b) = (0, 1) is 90°.
fn rotation_from_matrix(matrix: &[i32; 9]) -> u32 {
    let a = f64::from(matrix[0]);
    let b = f64::from(matrix[1]);
    if a == 0.0 && b == 0.0 {
        return 0;
    }
    let degrees = b.atan2(a).to_degrees();
    let quarter_turns = (degrees / 90.0).round() as i64;
    (quarter_turns.rem_euclid(4) * 90) as u32
}

/// Returns the track timescale and duration from `mdhd`.
fn parse_mdhd(body: &[u8]) -> Option<(u32, u64)> {
    let mut cursor = Cursor::new(body);
    let (version, _) = cursor.version_and_flags()?;
    if version == 1 {
        cursor.skip(16)?;
        Some((cursor.u32()?, cursor.u64()?))
    } else {
        cursor.skip(8)?;
        Some((cursor.u32()?, u64::from(cursor.u32()?)))
    }
}

/// Returns the handler type code and name from `hdlr`.
fn parse_hdlr(body: &[u8]) -> Option<(FourCc, Option<String>)> {
    let mut cursor = Cursor::new(body);
    cursor.version_and_flags()?;
    cursor.skip(4)?;
    let handler_type = cursor.fourcc()?;
    cursor.skip(12)?;
    let raw_name = cursor.bytes(cursor.remaining())?;
    Some((handler_type, handler_name(raw_name)))
}

/// Decodes an `hdlr` name, which ISO files write as a NUL-terminated string
/// and QuickTime files as a Pascal string whose first byte is its length.
fn handler_name(raw: &[u8]) -> Option<String> {
    let text = match raw.split_first() {
        Some((&length, rest))
            if usize::from(length) <= rest.len()
                && length > 0
                && !rest[..usize::from(length)].contains(&0)
                && rest[usize::from(length)..].iter().all(|&b| b == 0) =>
        {
            &rest[..usize::from(length)]
        }
        _ => raw.split(|&b| b == 0).next().unwrap_or_default(),
    };
    let name = String::from_utf8_lossy(text).trim_end().to_string();
    (!name.is_empty()).then_some(name)
}

/// Sample entry fields used by the index.
struct SampleEntry {
    format: FourCc,
    width: Option<u32>,
    height: Option<u32>,
}

/// Reads the first entry of `stsd`: its format fourcc and, as for a visual
/// sample entry, the 16-bit width and height 24 bytes into its body.
fn first_sample_entry(body: &[u8]) -> Option<SampleEntry> {
    let mut cursor = Cursor::new(body);
    cursor.version_and_flags()?;
    let count = cursor.u32()?;
    if count == 0 {
        return None;
    }
    let _entry_size = cursor.u32()?;
    let format = cursor.fourcc()?;
    // reserved[6], data_reference_index, pre_defined, reserved, pre_defined[3]
    let visual = cursor.skip(6 + 2 + 2 + 2 + 12).and_then(|_| {
        let width = cursor.u16()?;
        let height = cursor.u16()?;
        Some((u32::from(width), u32::from(height)))
    });
    Some(SampleEntry {
        format,
        width: visual.map(|v| v.0),
        height: visual.map(|v| v.1),
    })
}

fn elst_too_short(label: &Text, log: &mut ProblemLog) {
    log.malformed(
        format!("{} 的 elst box 过短", label.zh),
        format!("the elst box of {} is too short", label.en),
    );
}

fn parse_elst(body: &[u8], movie_timescale: u32, label: &Text, log: &mut ProblemLog) -> Vec<Edit> {
    let mut cursor = Cursor::new(body);
    let Some((version, _)) = cursor.version_and_flags() else {
        elst_too_short(label, log);
        return Vec::new();
    };
    let Some(count) = cursor.u32() else {
        elst_too_short(label, log);
        return Vec::new();
    };
    let entry_bytes = if version == 1 { 20 } else { 12 };
    let fitting = fitting_entries(&cursor, u64::from(count), entry_bytes);
    if fitting < count as usize {
        log.malformed(
            format!(
                "{} 的 elst box 声明有 {count} 条编辑，但只含 {fitting} 条",
                label.zh
            ),
            format!(
                "the elst box of {} declares {count} edits but contains only {fitting}",
                label.en
            ),
        );
    }

    let mut edits = Vec::with_capacity(fitting);
    for _ in 0..fitting {
        let entry = (|| {
            let (segment_duration, media_time) = if version == 1 {
                (cursor.u64()?, cursor.u64()? as i64)
            } else {
                (u64::from(cursor.u32()?), i64::from(cursor.i32()?))
            };
            let rate_integer = cursor.u16()? as i16;
            let rate_fraction = cursor.u16()?;
            Some(Edit {
                segment_duration,
                movie_timescale,
                media_time,
                media_rate: f64::from(rate_integer) + f64::from(rate_fraction) / 65536.0,
            })
        })();
        match entry {
            Some(edit) => edits.push(edit),
            None => break,
        }
    }
    edits
}

// ---------------------------------------------------------------------------
// Sample tables
// ---------------------------------------------------------------------------

/// Sample sizes from `stsz` or `stz2`.
enum SampleSizes {
    Constant { size: u32, count: u64 },
    Table { sizes: Vec<u32>, count: u64 },
}

impl SampleSizes {
    fn declared_count(&self) -> u64 {
        match self {
            SampleSizes::Constant { count, .. } | SampleSizes::Table { count, .. } => *count,
        }
    }

    fn size_of(&self, sample: usize) -> u32 {
        match self {
            SampleSizes::Constant { size, .. } => *size,
            SampleSizes::Table { sizes, .. } => sizes.get(sample).copied().unwrap_or(0),
        }
    }

    /// Number of samples whose size is known.
    fn known_count(&self) -> u64 {
        match self {
            SampleSizes::Constant { count, .. } => *count,
            SampleSizes::Table { sizes, .. } => sizes.len() as u64,
        }
    }
}

/// `stsc` entry.
#[derive(Clone, Copy)]
struct ChunkRun {
    first_chunk: u32,
    samples_per_chunk: u32,
}

/// The sample tables of one track, each bounded by the bytes of its box.
#[derive(Default)]
struct SampleTables {
    sizes: Option<SampleSizes>,
    /// `stts` runs of (sample count, sample delta).
    time_to_sample: Vec<(u32, u32)>,
    /// `ctts` runs of (sample count, composition offset).
    composition_offsets: Vec<(u32, i32)>,
    chunk_runs: Vec<ChunkRun>,
    chunk_offsets: Vec<u64>,
    /// 1-based sample numbers from `stss`, or None when every sample is sync.
    sync_samples: Option<Vec<u32>>,
}

fn read_sample_tables(children: &[ChildBox], label: &Text, log: &mut ProblemLog) -> SampleTables {
    let mut tables = SampleTables::default();
    let short_box = |name: &str, log: &mut ProblemLog| table_header_too_short(name, label, log);

    if let Some(body) = find_child(children, b"stsz") {
        tables.sizes = parse_stsz(body, label, log);
        if tables.sizes.is_none() {
            short_box("stsz", log);
        }
    } else if let Some(body) = find_child(children, b"stz2") {
        tables.sizes = parse_stz2(body, label, log);
        if tables.sizes.is_none() {
            short_box("stz2", log);
        }
    } else {
        log.malformed(
            format!("{} 没有 stsz 或 stz2 样本大小表", label.zh),
            format!("{} has no stsz or stz2 sample size table", label.en),
        );
    }

    match find_child(children, b"stts") {
        Some(body) => {
            tables.time_to_sample =
                parse_pairs(body, "stts", label, log, |c| Some((c.u32()?, c.u32()?)))
        }
        None => log.malformed(
            format!("{} 没有 stts 样本时间表", label.zh),
            format!("{} has no stts time-to-sample table", label.en),
        ),
    }

    // ctts version 0 is unsigned in the standard, but muxers write negative
    // offsets there too. FFmpeg's mov_read_ctts also reads both versions as
    // signed.
    if let Some(body) = find_child(children, b"ctts") {
        tables.composition_offsets =
            parse_pairs(body, "ctts", label, log, |c| Some((c.u32()?, c.i32()?)));
    }

    match find_child(children, b"stsc") {
        Some(body) => {
            tables.chunk_runs = parse_pairs(body, "stsc", label, log, |c| {
                let first_chunk = c.u32()?;
                let samples_per_chunk = c.u32()?;
                c.u32()?;
                Some(ChunkRun {
                    first_chunk,
                    samples_per_chunk,
                })
            })
        }
        None => log.malformed(
            format!("{} 没有 stsc 样本到块映射表", label.zh),
            format!("{} has no stsc sample-to-chunk table", label.en),
        ),
    }

    if let Some(body) = find_child(children, b"stco") {
        tables.chunk_offsets = parse_pairs(body, "stco", label, log, |c| c.u32().map(u64::from));
    } else if let Some(body) = find_child(children, b"co64") {
        tables.chunk_offsets = parse_pairs(body, "co64", label, log, |c| c.u64());
    } else {
        log.malformed(
            format!("{} 没有 stco 或 co64 块偏移表", label.zh),
            format!("{} has no stco or co64 chunk offset table", label.en),
        );
    }

    if let Some(body) = find_child(children, b"stss") {
        tables.sync_samples = Some(parse_pairs(body, "stss", label, log, |c| c.u32()));
    }
    tables
}

fn table_header_too_short(name: &str, label: &Text, log: &mut ProblemLog) {
    log.malformed(
        format!("{} 的 {name} box 过短，容不下其头部", label.zh),
        format!("the {name} box of {} is too short for its header", label.en),
    );
}

/// Parses a full box holding a 32-bit entry count and fixed-size entries,
/// reading only the entries that fit in the box.
fn parse_pairs<T>(
    body: &[u8],
    name: &str,
    label: &Text,
    log: &mut ProblemLog,
    mut read_entry: impl FnMut(&mut Cursor) -> Option<T>,
) -> Vec<T> {
    let mut cursor = Cursor::new(body);
    let Some(count) = cursor.version_and_flags().and_then(|_| cursor.u32()) else {
        table_header_too_short(name, label, log);
        return Vec::new();
    };

    // Measure one entry on a copy to learn its size.
    let entry_bytes = {
        let mut probe = Cursor {
            data: cursor.data,
            position: cursor.position,
        };
        let start = probe.position;
        read_entry(&mut probe).map_or(1, |_| probe.position - start)
    };
    let fitting = fitting_entries(&cursor, u64::from(count), entry_bytes);
    if (fitting as u64) < u64::from(count) {
        log.malformed(
            format!(
                "{} 的 {name} box 声明有 {count} 个条目，但只含 {fitting} 个",
                label.zh
            ),
            format!(
                "the {name} box of {} declares {count} entries but contains only {fitting}",
                label.en
            ),
        );
    }

    let mut entries = Vec::with_capacity(fitting);
    for _ in 0..fitting {
        match read_entry(&mut cursor) {
            Some(entry) => entries.push(entry),
            None => break,
        }
    }
    entries
}

fn parse_stsz(body: &[u8], label: &Text, log: &mut ProblemLog) -> Option<SampleSizes> {
    let mut cursor = Cursor::new(body);
    cursor.version_and_flags()?;
    let size = cursor.u32()?;
    let count = u64::from(cursor.u32()?);
    if size != 0 {
        return Some(SampleSizes::Constant { size, count });
    }
    let fitting = fitting_entries(&cursor, count, 4);
    if (fitting as u64) < count {
        log.malformed(
            format!(
                "{} 的 stsz box 声明有 {count} 个样本大小，但只含 {fitting} 个",
                label.zh
            ),
            format!(
                "the stsz box of {} declares {count} sample sizes but contains only {fitting}",
                label.en
            ),
        );
    }
    let mut sizes = Vec::with_capacity(fitting);
    for _ in 0..fitting {
        sizes.push(cursor.u32()?);
    }
    Some(SampleSizes::Table { sizes, count })
}

fn parse_stz2(body: &[u8], label: &Text, log: &mut ProblemLog) -> Option<SampleSizes> {
    let mut cursor = Cursor::new(body);
    cursor.version_and_flags()?;
    cursor.skip(3)?;
    let field_bits = cursor.u8()?;
    let count = u64::from(cursor.u32()?);
    if !matches!(field_bits, 4 | 8 | 16) {
        log.malformed(
            format!(
                "{} 的 stz2 box 使用 {field_bits} 位的样本大小，而标准只定义了 4、8 和 16 位",
                label.zh
            ),
            format!(
                "the stz2 box of {} uses {field_bits}-bit sizes; only 4, 8 and 16 are defined",
                label.en
            ),
        );
        return Some(SampleSizes::Table {
            sizes: Vec::new(),
            count,
        });
    }

    let fit = (cursor.remaining() as u64).saturating_mul(8) / u64::from(field_bits);
    let fitting = count.min(fit) as usize;
    if (fitting as u64) < count {
        log.malformed(
            format!(
                "{} 的 stz2 box 声明有 {count} 个样本大小，但只含 {fitting} 个",
                label.zh
            ),
            format!(
                "the stz2 box of {} declares {count} sample sizes but contains only {fitting}",
                label.en
            ),
        );
    }
    let data = cursor.bytes(cursor.remaining())?;
    let mut sizes = Vec::with_capacity(fitting);
    for sample in 0..fitting {
        let size = match field_bits {
            4 => {
                let byte = data[sample / 2];
                if sample % 2 == 0 {
                    byte >> 4
                } else {
                    byte & 0x0f
                }
                .into()
            }
            8 => data[sample].into(),
            _ => u16::from_be_bytes([data[sample * 2], data[sample * 2 + 1]]).into(),
        };
        sizes.push(size);
    }
    Some(SampleSizes::Table { sizes, count })
}

/// Steps through run-length tables such as `stts` and `ctts`, skipping runs
/// of zero samples.
struct RunCursor<'a, T: Copy> {
    runs: &'a [(u32, T)],
    run: usize,
    used_in_run: u32,
}

impl<'a, T: Copy> RunCursor<'a, T> {
    fn new(runs: &'a [(u32, T)]) -> RunCursor<'a, T> {
        RunCursor {
            runs,
            run: 0,
            used_in_run: 0,
        }
    }

    fn next_value(&mut self) -> Option<T> {
        while let Some(&(count, value)) = self.runs.get(self.run) {
            if self.used_in_run < count {
                self.used_in_run += 1;
                return Some(value);
            }
            self.run += 1;
            self.used_in_run = 0;
        }
        None
    }
}

/// Samples built from the tables of one track.
struct BuiltSamples {
    /// Samples whose bytes lie wholly inside the file, in decode order.
    samples: Vec<Sample>,
    /// Count that `stsz` declares.
    declared: u64,
    /// Samples located by the tables but left out because their bytes run
    /// past the end of the file.
    past_end: u64,
}

/// Builds the samples of a non-fragmented track from its tables.
///
/// The number located is the smallest of what `stsz`, `stts` and the chunk
/// tables cover (each shortfall reported), capped by
/// [`MAX_SAMPLES_PER_FILE`]. Samples past the end of the file are counted,
/// not stored, so a damaged count cannot make the index outgrow the file.
fn build_samples(
    tables: &SampleTables,
    file_size: u64,
    budget: &mut SampleBudget,
    label: &Text,
    log: &mut ProblemLog,
) -> BuiltSamples {
    let mut built = BuiltSamples {
        samples: Vec::new(),
        declared: 0,
        past_end: 0,
    };
    let Some(sizes) = &tables.sizes else {
        return built;
    };
    let declared = sizes.declared_count();
    built.declared = declared;
    let mut limit = declared;
    if limit > budget.remaining {
        log.malformed(
            format!(
                "{} 声明有 {declared} 个样本，会使整个文件超过本读取器最多索引的 {MAX_SAMPLES_PER_FILE} 个样本；只列出前 {} 个",
                label.zh, budget.remaining
            ),
            format!(
                "{} declares {declared} samples, which would take the file past the {MAX_SAMPLES_PER_FILE} samples this reader indexes; only the first {} are listed",
                label.en, budget.remaining
            ),
        );
        limit = budget.remaining;
    }
    limit = limit.min(sizes.known_count());

    let timed: u64 = tables
        .time_to_sample
        .iter()
        .map(|&(count, _)| u64::from(count))
        .sum();
    if timed < limit {
        log.malformed(
            format!(
                "{} 的 stts 表只给出 {timed} 个样本的时间，而 stsz 声明有 {declared} 个；只列出 {timed} 个",
                label.zh
            ),
            format!(
                "the stts table of {} gives times for {timed} samples but stsz declares {declared}; only {timed} are listed",
                label.en
            ),
        );
        limit = timed;
    }
    if limit == 0 {
        return built;
    }
    if tables.chunk_runs.is_empty() || tables.chunk_offsets.is_empty() {
        log.malformed(
            format!(
                "{} 的块表（stsc、stco）为空，其 {declared} 个样本都无法定位",
                label.zh
            ),
            format!(
                "the chunk tables (stsc, stco) of {} are empty, so none of its {declared} samples can be located",
                label.en
            ),
        );
        return built;
    }

    let sync = tables
        .sync_samples
        .as_deref()
        .map(|numbers| SyncTable::new(numbers, declared, label, log));
    // `limit` is at most what is left of MAX_SAMPLES_PER_FILE. The first
    // allocation is smaller still and grows only with samples in the file.
    let limit = limit as usize;
    let mut samples = Vec::with_capacity(limit.min(1 << 16));
    let mut located = 0usize;
    let mut past_end = 0u64;
    let mut times = RunCursor::new(&tables.time_to_sample);
    let mut offsets = RunCursor::new(&tables.composition_offsets);
    let mut dts: i64 = 0;
    let chunk_count = tables.chunk_offsets.len() as u64;
    let mut previous_first_chunk = 0u32;
    let mut zero_sample_chunks = false;

    'runs: for (position, run) in tables.chunk_runs.iter().enumerate() {
        let first = run.first_chunk;
        if first == 0 {
            log.malformed(
                format!(
                    "{} 的 stsc 第 {position} 项指向块 0，而块从 1 开始编号",
                    label.zh
                ),
                format!(
                    "stsc entry {position} of {} names chunk 0, but chunks are numbered from 1",
                    label.en
                ),
            );
            break;
        }
        if first < previous_first_chunk {
            log.malformed(
                format!(
                    "{} 的 stsc 第 {position} 项从块 {first} 开始，早于上一项的块 {previous_first_chunk}",
                    label.zh
                ),
                format!(
                    "stsc entry {position} of {} starts at chunk {first}, before the previous entry's chunk {previous_first_chunk}",
                    label.en
                ),
            );
            break;
        }
        if u64::from(first) > chunk_count {
            log.malformed(
                format!(
                    "{} 的 stsc 第 {position} 项从块 {first} 开始，但 stco 只列出 {chunk_count} 个块",
                    label.zh
                ),
                format!(
                    "stsc entry {position} of {} starts at chunk {first} but stco lists only {chunk_count} chunks",
                    label.en
                ),
            );
            break;
        }
        previous_first_chunk = first;
        if run.samples_per_chunk == 0 {
            zero_sample_chunks = true;
        }

        // A run lasts until the next entry's first chunk. An entry repeating
        // the same first chunk covers no chunks.
        let next_first = tables
            .chunk_runs
            .get(position + 1)
            .map_or(chunk_count + 1, |next| u64::from(next.first_chunk))
            .clamp(u64::from(first), chunk_count + 1);

        for chunk in u64::from(first)..next_first {
            let mut offset = tables.chunk_offsets[(chunk - 1) as usize];
            for _ in 0..run.samples_per_chunk {
                if located == limit {
                    break 'runs;
                }
                let sample_number = located;
                let size = sizes.size_of(sample_number);
                let Some(duration) = times.next_value() else {
                    break 'runs;
                };
                let composition = offsets.next_value().unwrap_or(0);
                located += 1;
                let Some(end) = offset.checked_add(u64::from(size)) else {
                    log.malformed(
                        format!(
                            "{} 的样本 {sample_number} 的结束位置超出了文件偏移的最大可能值",
                            label.zh
                        ),
                        format!(
                            "sample {sample_number} of {} ends beyond the largest possible file offset",
                            label.en
                        ),
                    );
                    break 'runs;
                };
                if end <= file_size {
                    samples.push(Sample {
                        dts,
                        pts: dts.saturating_add(i64::from(composition)),
                        duration,
                        size,
                        offset,
                        is_sync: sync
                            .as_ref()
                            .map_or(true, |table| table.contains(sample_number)),
                    });
                } else {
                    past_end += 1;
                }
                dts = dts.saturating_add(i64::from(duration));
                offset = end;
            }
        }
    }

    if zero_sample_chunks {
        log.malformed(
            format!("{} 的 stsc 表中有些块的每块样本数为 0", label.zh),
            format!(
                "the stsc table of {} gives 0 samples per chunk for some chunks",
                label.en
            ),
        );
    }
    if located < limit {
        log.malformed(
            format!(
                "{} 的块表（stsc、stco）只定位了其 {declared} 个样本中的 {located} 个",
                label.zh
            ),
            format!(
                "the chunk tables (stsc, stco) of {} place only {located} of its {declared} samples",
                label.en
            ),
        );
    }
    budget.remaining = budget.remaining.saturating_sub(located as u64);
    built.samples = samples;
    built.past_end = past_end;
    built
}

/// Sync sample numbers from `stss`, sorted for lookup.
struct SyncTable {
    numbers: Vec<u32>,
}

impl SyncTable {
    /// Sorts the 1-based sample numbers and reports those outside the
    /// track's `declared` samples.
    fn new(numbers: &[u32], declared: u64, label: &Text, log: &mut ProblemLog) -> SyncTable {
        let out_of_range = numbers
            .iter()
            .filter(|&&n| n == 0 || u64::from(n) > declared)
            .count();
        if out_of_range > 0 {
            log.malformed(
                format!(
                    "{} 的 stss 表列出了 {out_of_range} 个超出该轨道 {declared} 个样本范围的样本编号",
                    label.zh
                ),
                format!(
                    "the stss table of {} lists {out_of_range} sample numbers outside the track's {declared} samples",
                    label.en
                ),
            );
        }
        let mut numbers = numbers.to_vec();
        numbers.sort_unstable();
        SyncTable { numbers }
    }

    /// Returns true when the 0-based `sample` is a sync sample.
    fn contains(&self, sample: usize) -> bool {
        u32::try_from(sample + 1).is_ok_and(|number| self.numbers.binary_search(&number).is_ok())
    }
}

// ---------------------------------------------------------------------------
// Movie fragments
// ---------------------------------------------------------------------------

/// Samples that may still be located in the file, stored or not.
struct SampleBudget {
    remaining: u64,
}

/// Samples one fragment adds to one track, kept apart until the whole
/// fragment is known.
struct TrackFragment {
    track: usize,
    samples: Vec<Sample>,
    /// Samples left out because their bytes run past the end of the file.
    past_end: u64,
    declared: u64,
    next_dts: i64,
}

/// Adds the samples of every movie fragment to its track.
///
/// Samples whose bytes run past the end of the file are left out. In the
/// last fragment they mean that the recording stopped while writing it,
/// which is reported as not finalized. A last `moof` cut off by the end of
/// the file is dropped whole. Elsewhere such samples count as truncated in
/// `past_end`.
fn apply_fragments(
    tracks: &mut [TrackIndex],
    past_end: &mut [u64],
    extends: &HashMap<u32, TrackExtends>,
    fragments: &[FragmentBox],
    file_size: u64,
    budget: &mut SampleBudget,
    log: &mut ProblemLog,
) {
    let positions: HashMap<u32, usize> = tracks
        .iter()
        .enumerate()
        .map(|(position, track)| (track.id, position))
        .rev()
        .collect();
    // Decode time where each track's next fragment continues when it has
    // no tfdt: after the samples already indexed.
    let mut next_dts: Vec<i64> = tracks
        .iter()
        .map(|t| {
            t.samples
                .last()
                .map_or(0, |s| s.dts.saturating_add(i64::from(s.duration)))
        })
        .collect();

    for (number, fragment) in fragments.iter().enumerate() {
        let is_last = number + 1 == fragments.len();
        if fragment.truncated && is_last {
            log.push(IndexProblem::NotFinalized {
                reason: Text::new(
                    format!(
                        "最后一个影片分片（偏移 {} 处的 moof）被文件结尾截断：录制被中断，其中的样本已忽略",
                        fragment.offset
                    ),
                    format!(
                        "the last movie fragment (moof at offset {}) is cut off by the end of the file: the recording was interrupted, and its samples were ignored",
                        fragment.offset
                    ),
                ),
            });
            continue;
        }

        let context = FragmentContext {
            positions: &positions,
            extends,
            next_dts: &next_dts,
            file_size,
        };
        let parsed = parse_moof(fragment, &context, budget, log);
        let left_out: u64 = parsed.iter().map(|f| f.past_end).sum();
        if is_last && left_out > 0 {
            let kept: usize = parsed.iter().map(|f| f.samples.len()).sum();
            log.push(IndexProblem::NotFinalized {
                reason: Text::new(
                    format!(
                        "最后一个影片分片（偏移 {} 处的 moof）不完整：其中 {left_out} 个样本超出文件结尾（第 {file_size} 字节），已略去，{kept} 个完整保留（录制被中断）",
                        fragment.offset
                    ),
                    format!(
                        "the last movie fragment (moof at offset {}) is incomplete: {left_out} of its samples run past the end of the file at byte {file_size} and were left out, {kept} are wholly present (the recording was interrupted)",
                        fragment.offset
                    ),
                ),
            });
        }

        for track_fragment in parsed {
            let position = track_fragment.track;
            next_dts[position] = track_fragment.next_dts;
            if !is_last {
                past_end[position] += track_fragment.past_end;
            }
            let track = &mut tracks[position];
            track.declared_samples = track
                .declared_samples
                .saturating_add(track_fragment.declared);
            track.samples.extend(track_fragment.samples);
        }
    }
}

/// Movie fields that parsing a `moof` needs.
struct FragmentContext<'a> {
    /// Track position for each track ID.
    positions: &'a HashMap<u32, usize>,
    extends: &'a HashMap<u32, TrackExtends>,
    /// Decode time at which each track continues without a tfdt.
    next_dts: &'a [i64],
    file_size: u64,
}

/// `tfhd` fields.
struct FragmentHeader {
    flags: u32,
    track_id: u32,
    base_data_offset: Option<u64>,
    default_duration: Option<u32>,
    default_size: Option<u32>,
    default_flags: Option<u32>,
}

fn parse_tfhd(body: &[u8]) -> Option<FragmentHeader> {
    let mut cursor = Cursor::new(body);
    let (_, flags) = cursor.version_and_flags()?;
    let track_id = cursor.u32()?;
    let base_data_offset = if flags & TFHD_BASE_DATA_OFFSET != 0 {
        Some(cursor.u64()?)
    } else {
        None
    };
    if flags & TFHD_SAMPLE_DESCRIPTION_INDEX != 0 {
        cursor.u32()?;
    }
    let mut optional = |flag: u32| -> Option<Option<u32>> {
        if flags & flag != 0 {
            cursor.u32().map(Some)
        } else {
            Some(None)
        }
    };
    let default_duration = optional(TFHD_DEFAULT_DURATION)?;
    let default_size = optional(TFHD_DEFAULT_SIZE)?;
    let default_flags = optional(TFHD_DEFAULT_FLAGS)?;
    Some(FragmentHeader {
        flags,
        track_id,
        base_data_offset,
        default_duration,
        default_size,
        default_flags,
    })
}

/// Returns `baseMediaDecodeTime` from `tfdt`.
fn parse_tfdt(body: &[u8]) -> Option<u64> {
    let mut cursor = Cursor::new(body);
    let (version, _) = cursor.version_and_flags()?;
    if version == 1 {
        cursor.u64()
    } else {
        cursor.u32().map(u64::from)
    }
}

/// Parses one `moof` into per-track samples without touching the tracks.
fn parse_moof(
    fragment: &FragmentBox,
    context: &FragmentContext,
    budget: &mut SampleBudget,
    log: &mut ProblemLog,
) -> Vec<TrackFragment> {
    let label = Text::new(
        format!("偏移 {} 处的 moof", fragment.offset),
        format!("moof at offset {}", fragment.offset),
    );
    let mut result: Vec<TrackFragment> = Vec::new();
    // Without an explicit base, each traf's data follows the previous one's
    // and the first starts at the moof (ISO/IEC 14496-12 §8.8.7.1).
    let mut previous_traf_end: Option<u64> = None;

    let children = child_boxes(&fragment.body, fragment.body_offset, &label, log);
    for traf in children.iter().filter(|c| &c.box_type == b"traf") {
        let traf_children = child_boxes(traf.body, traf.body_offset, &box_label("traf"), log);
        let Some(header) = find_child(&traf_children, b"tfhd").and_then(parse_tfhd) else {
            log.malformed(
                format!("{} 中有一个 traf 没有可读的 tfhd，其样本已跳过", label.zh),
                format!(
                    "a traf in the {} has no readable tfhd; its samples were skipped",
                    label.en
                ),
            );
            continue;
        };
        let Some(&track) = context.positions.get(&header.track_id) else {
            log.malformed(
                format!(
                    "{} 中有一个 traf 指向轨道 ID {}，而 moov 中没有声明该轨道；其样本已跳过",
                    label.zh, header.track_id
                ),
                format!(
                    "a traf in the {} names track ID {}, which moov does not declare; its samples were skipped",
                    label.en, header.track_id
                ),
            );
            continue;
        };
        let extends = context
            .extends
            .get(&header.track_id)
            .copied()
            .unwrap_or_default();
        let defaults = RunDefaults {
            duration: header.default_duration.unwrap_or(extends.default_duration),
            size: header.default_size.unwrap_or(extends.default_size),
            flags: header.default_flags.unwrap_or(extends.default_flags),
        };

        let base = if let Some(base) = header.base_data_offset {
            base
        } else if header.flags & TFHD_DEFAULT_BASE_IS_MOOF != 0 {
            fragment.offset
        } else {
            previous_traf_end.unwrap_or(fragment.offset)
        };

        let running_dts = result
            .iter()
            .rev()
            .find(|f| f.track == track)
            .map_or(context.next_dts[track], |f| f.next_dts);
        let dts = match find_child(&traf_children, b"tfdt").map(parse_tfdt) {
            Some(Some(base_time)) => i64::try_from(base_time).unwrap_or(i64::MAX),
            Some(None) => {
                log.malformed(
                    format!("{} 中有一个 traf 的 tfdt 过短", label.zh),
                    format!("the tfdt of a traf in the {} is too short", label.en),
                );
                running_dts
            }
            None => running_dts,
        };

        let mut track_fragment = TrackFragment {
            track,
            samples: Vec::new(),
            past_end: 0,
            declared: 0,
            next_dts: dts,
        };
        let mut position = RunPosition {
            base,
            data_cursor: base,
            dts,
        };
        let mut has_run = false;
        for trun in traf_children.iter().filter(|c| &c.box_type == b"trun") {
            has_run = true;
            let Some(run) = parse_trun(
                trun.body,
                &mut position,
                defaults,
                context.file_size,
                budget,
                &label,
                log,
            ) else {
                continue;
            };
            track_fragment.declared = track_fragment.declared.saturating_add(run.declared);
            track_fragment.past_end += run.past_end;
            track_fragment.samples.extend(run.samples);
        }
        // A traf flagged duration-is-empty carries no samples but still
        // advances the track's time: the gap is part of the record.
        if !has_run && header.flags & TFHD_DURATION_IS_EMPTY != 0 {
            position.dts = position.dts.saturating_add(i64::from(defaults.duration));
        }
        track_fragment.next_dts = position.dts;
        previous_traf_end = Some(position.data_cursor);
        result.push(track_fragment);
    }
    result
}

/// Defaults for trun samples that carry no value of their own.
#[derive(Clone, Copy)]
struct RunDefaults {
    duration: u32,
    size: u32,
    flags: u32,
}

/// Position at which the next trun of a traf continues.
struct RunPosition {
    /// The traf's base data offset.
    base: u64,
    /// End of the previous trun's data, where a trun without its own data
    /// offset starts.
    data_cursor: u64,
    /// Decode time of the next sample.
    dts: i64,
}

/// Samples of one `trun`.
struct TrackRun {
    /// Samples wholly inside the file.
    samples: Vec<Sample>,
    /// Samples left out because their bytes run past the end of the file.
    past_end: u64,
    declared: u64,
}

/// Parses one `trun` and advances `position` past it. Returns None when its
/// header is unreadable.
fn parse_trun(
    body: &[u8],
    position: &mut RunPosition,
    defaults: RunDefaults,
    file_size: u64,
    budget: &mut SampleBudget,
    label: &Text,
    log: &mut ProblemLog,
) -> Option<TrackRun> {
    let mut cursor = Cursor::new(body);
    let short = |log: &mut ProblemLog| {
        log.malformed(
            format!(
                "{} 中有一个 trun 过短，容不下其头部；其样本已跳过",
                label.zh
            ),
            format!(
                "a trun in the {} is too short for its header; its samples were skipped",
                label.en
            ),
        );
    };
    let Some(((_, flags), count)) = cursor
        .version_and_flags()
        .and_then(|header| Some((header, cursor.u32()?)))
    else {
        short(log);
        return None;
    };

    let mut offset = position.data_cursor;
    if flags & TRUN_DATA_OFFSET != 0 {
        let Some(data_offset) = cursor.i32() else {
            short(log);
            return None;
        };
        match u64::try_from(i128::from(position.base) + i128::from(data_offset)) {
            Ok(start) => offset = start,
            Err(_) => {
                log.malformed(
                    format!(
                        "{} 中有一个 trun 的数据偏移 {data_offset} 指向文件开头之前；其样本已跳过",
                        label.zh
                    ),
                    format!(
                        "a trun in the {} has a data offset of {data_offset} that points before the start of the file; its samples were skipped",
                        label.en
                    ),
                );
                return None;
            }
        }
    }
    let mut first_sample_flags = None;
    if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
        let Some(value) = cursor.u32() else {
            short(log);
            return None;
        };
        first_sample_flags = Some(value);
    }

    let per_sample_fields = [
        TRUN_SAMPLE_DURATION,
        TRUN_SAMPLE_SIZE,
        TRUN_SAMPLE_FLAGS,
        TRUN_SAMPLE_CTO,
    ]
    .iter()
    .filter(|&&f| flags & f != 0)
    .count();
    let mut usable = u64::from(count);
    if per_sample_fields > 0 {
        let fitting = fitting_entries(&cursor, u64::from(count), per_sample_fields * 4) as u64;
        if fitting < usable {
            log.malformed(
                format!(
                    "{} 中有一个 trun 声明有 {count} 个样本，但只含 {fitting} 个样本的条目",
                    label.zh
                ),
                format!(
                    "a trun in the {} declares {count} samples but contains entries for only {fitting}",
                    label.en
                ),
            );
            usable = fitting;
        }
    }
    if usable > budget.remaining {
        log.malformed(
            format!(
                "{} 中有一个 trun 会使整个文件超过本读取器最多索引的 {MAX_SAMPLES_PER_FILE} 个样本；其余样本未列出",
                label.zh
            ),
            format!(
                "a trun in the {} would take the file past the {MAX_SAMPLES_PER_FILE} samples this reader indexes; the rest are not listed",
                label.en
            ),
        );
        usable = budget.remaining;
    }
    budget.remaining -= usable;

    let field = |cursor: &mut Cursor, flag: u32, default: u32| -> Option<u32> {
        if flags & flag != 0 {
            cursor.u32()
        } else {
            Some(default)
        }
    };
    let mut run = TrackRun {
        samples: Vec::with_capacity((usable as usize).min(1 << 16)),
        past_end: 0,
        declared: u64::from(count),
    };
    let mut dts = position.dts;
    for number in 0..usable {
        let entry = (|| {
            let duration = field(&mut cursor, TRUN_SAMPLE_DURATION, defaults.duration)?;
            let size = field(&mut cursor, TRUN_SAMPLE_SIZE, defaults.size)?;
            let own_flags = field(&mut cursor, TRUN_SAMPLE_FLAGS, defaults.flags)?;
            // Version 0 offsets are unsigned in the standard. As for ctts,
            // they are read as signed.
            let composition = if flags & TRUN_SAMPLE_CTO != 0 {
                cursor.i32()?
            } else {
                0
            };
            Some((duration, size, own_flags, composition))
        })();
        let Some((duration, size, own_flags, composition)) = entry else {
            break;
        };
        let sample_flags = match first_sample_flags {
            Some(first) if number == 0 && flags & TRUN_SAMPLE_FLAGS == 0 => first,
            _ => own_flags,
        };
        let end = offset.saturating_add(u64::from(size));
        if end <= file_size {
            run.samples.push(Sample {
                dts,
                pts: dts.saturating_add(i64::from(composition)),
                duration,
                size,
                offset,
                is_sync: sample_flags & SAMPLE_FLAG_NON_SYNC == 0,
            });
        } else {
            run.past_end += 1;
        }
        dts = dts.saturating_add(i64::from(duration));
        offset = end;
    }

    position.data_cursor = offset;
    position.dts = dts;
    Some(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::index::read_index;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// One frame at 30 fps, the tolerance for times.
    const FRAME_30FPS: f64 = 1.0 / 30.0;

    fn fixture(relative: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(relative)
    }

    fn index_of(relative: &str) -> ContainerIndex {
        read_index(&fixture(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    fn track_of(index: &ContainerIndex, kind: TrackKind) -> &TrackIndex {
        index
            .tracks
            .iter()
            .find(|t| t.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} track"))
    }

    fn not_finalized(index: &ContainerIndex) -> bool {
        index
            .problems
            .iter()
            .any(|p| matches!(p, IndexProblem::NotFinalized { .. }))
    }

    fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{what}: got {actual}, expected {expected} ± {tolerance}"
        );
    }

    #[test]
    fn base_clip_has_300_avc1_frames_over_10s() {
        let index = index_of("cases/base-10s.mp4");
        let video = track_of(&index, TrackKind::Video);

        assert_eq!(video.codec, "avc1");
        assert_eq!(video.handler_type, "vide");
        assert_eq!((video.width, video.height), (Some(320), Some(240)));
        assert_eq!(video.samples.len(), 300);
        assert_eq!(video.declared_samples, 300);
        assert_close(video.media_duration(), 10.0, 0.1, "video duration");
        assert_close(
            video.nominal_step().unwrap(),
            FRAME_30FPS,
            1e-9,
            "frame step",
        );
        assert!(video.samples[0].is_sync);
        assert!(index.problems.is_empty(), "{:?}", index.problems);
        assert!(!index.is_fragmented);
    }

    #[test]
    fn base_clip_lists_aac_audio() {
        let index = index_of("cases/base-10s.mp4");
        let audio = track_of(&index, TrackKind::Audio);

        assert_eq!(audio.codec, "mp4a");
        assert_eq!(audio.timescale, 48_000);
        assert_eq!(audio.samples.len(), 470);
        assert_close(audio.media_duration(), 10.0267, 0.1, "audio duration");
        assert_eq!(audio.width, None);
    }

    #[test]
    fn sample_offsets_match_ffprobe_packets() {
        // (size, pos) of the first video packets as printed by ffprobe 5.1.9
        // with `-select_streams v:0 -show_entries packet=size,pos`.
        let expected = [(1454, 48), (562, 1502), (505, 2064)];
        let index = index_of("cases/base-10s.mp4");
        let video = track_of(&index, TrackKind::Video);
        for (sample, (size, offset)) in video.samples.iter().zip(expected) {
            assert_eq!(sample.size, size);
            assert_eq!(sample.offset, offset);
        }
    }

    #[test]
    fn dropped_frames_clip_keeps_245_samples() {
        let index = index_of("cases/dropped-frames.mp4");
        let video = track_of(&index, TrackKind::Video);

        assert_eq!(video.samples.len(), 245);
        assert_eq!(video.declared_samples, 245);
        let steps: Vec<i64> = video
            .samples
            .windows(2)
            .map(|w| w[1].dts - w[0].dts)
            .collect();
        let shortest = steps.iter().min().unwrap();
        let longest = steps.iter().max().unwrap();
        assert!(
            longest > shortest,
            "dropped frames leave longer steps in stts"
        );
    }

    #[test]
    fn empty_edit_delays_start_by_1075ms() {
        let index = index_of("cases/editlist-delayed-start.mp4");
        for track in &index.tracks {
            assert_eq!(track.edits[0].media_time, -1);
            assert_close(
                track.presentation_start(),
                1.075,
                1e-6,
                "presentation start",
            );
        }
    }

    #[test]
    fn cut_at_non_keyframe_hides_preroll() {
        let index = index_of("cases/cut-at-non-keyframe.mp4");
        let video = track_of(&index, TrackKind::Video);

        assert_eq!(video.samples.len(), 77);
        assert_eq!(video.edits.len(), 1);
        assert_eq!(video.edits[0].media_time, 6800);
        assert_close(video.presentation_start(), 0.0, 1e-9, "presentation start");

        let shown = video.presentation_times();
        assert_eq!(shown.len(), 62, "15 preroll frames are hidden");
        let step = video.nominal_step().unwrap();
        let shown_span = shown.last().unwrap() - shown.first().unwrap() + step;
        assert_close(shown_span, 2.1, FRAME_30FPS, "presented span");
        assert_close(
            video.edits[0].segment_seconds().unwrap(),
            2.1,
            1e-9,
            "edit length",
        );
    }

    #[test]
    fn fragmented_clip_has_300_frames_over_10s() {
        let index = index_of("cases/fragmented.mp4");
        let video = track_of(&index, TrackKind::Video);

        assert!(index.is_fragmented);
        assert_eq!(video.samples.len(), 300);
        assert_close(video.media_duration(), 10.0, 0.1, "duration");
        assert!(!not_finalized(&index), "{:?}", index.problems);
        let decode_order_ok = video.samples.windows(2).all(|w| w[1].dts > w[0].dts);
        assert!(decode_order_ok);
    }

    #[test]
    fn killed_fragmented_clip_keeps_complete_fragments() {
        let index = index_of("cases/fragmented-killed.mp4");
        let video = track_of(&index, TrackKind::Video);

        assert_eq!(video.samples.len(), 168);
        assert_eq!(video.declared_samples, 172);
        assert_close(video.media_duration(), 5.6, 0.056, "duration");
        assert!(not_finalized(&index), "{:?}", index.problems);
        let truncated = index
            .problems
            .iter()
            .any(|p| matches!(p, IndexProblem::Truncated { .. }));
        assert!(!truncated, "an unfinished fragment is reported once");
    }

    #[test]
    fn unfinalized_recordings_report_missing_moov() {
        for name in [
            "cases/unfinalized-truncated.mp4",
            "cases/unfinalized-killed.mp4",
        ] {
            let index = index_of(name);
            assert!(index.tracks.is_empty(), "{name}");
            let reason = index.problems.iter().find_map(|p| match p {
                IndexProblem::NotFinalized { reason } => Some(reason.clone()),
                _ => None,
            });
            assert_eq!(
                reason,
                Some(Text::new(NO_MOOV_REASON_ZH, NO_MOOV_REASON)),
                "{name}"
            );
        }
    }

    #[test]
    fn unset_clock_creation_times_convert_to_unix() {
        assert_eq!(
            index_of("cases/clock-unset-1904.mp4").creation_time,
            Some(-2_082_844_800)
        );
        assert_eq!(
            index_of("cases/clock-unset-1970.mp4").creation_time,
            Some(0)
        );
    }

    #[test]
    fn hevc_sample_entries_keep_their_fourcc() {
        for (name, codec) in [
            ("cases/hevc-hev1.mp4", "hev1"),
            ("cases/hevc-hvc1.mp4", "hvc1"),
        ] {
            let index = index_of(name);
            let video = track_of(&index, TrackKind::Video);
            assert_eq!(video.codec, codec, "{name}");
            assert_eq!(video.samples.len(), 30, "{name}");
            assert_close(video.media_duration(), 1.0, 0.01, name);
        }
    }

    #[test]
    fn timecode_track_is_listed() {
        let index = index_of("cases/timecode-track.mp4");
        let timecode = track_of(&index, TrackKind::Timecode);
        assert_eq!(timecode.codec, "tmcd");
        assert_eq!(timecode.handler_type, "tmcd");
        assert_eq!(index.tracks.len(), 3);
    }

    #[test]
    fn odd_width_comes_from_sample_entry() {
        let index = index_of("cases/odd-width-853x480.mp4");
        let video = track_of(&index, TrackKind::Video);
        // The encoder rounded 853 down to 852 in both tkhd and avc1.
        assert_eq!((video.width, video.height), (Some(852), Some(480)));
        assert_eq!(video.samples.len(), 75);
    }

    #[test]
    fn gopro_karma_lists_five_tracks_by_handler_type() {
        let index = index_of("samples/gopro/karma.mp4");
        let codecs: Vec<&str> = index.tracks.iter().map(|t| t.codec.as_str()).collect();
        assert_eq!(codecs, ["avc1", "mp4a", "tmcd", "gpmd", "fdsc"]);

        let video = &index.tracks[0];
        assert_eq!(video.kind, TrackKind::Video);
        assert_eq!(video.samples.len(), 362);
        assert_close(video.media_duration(), 12.08, 0.1208, "video duration");

        let telemetry = &index.tracks[3];
        assert_eq!(telemetry.kind, TrackKind::Metadata);
        assert_eq!(telemetry.handler_name.as_deref(), Some("GoPro MET"));
        assert_eq!(index.tracks[2].kind, TrackKind::Timecode);
    }

    #[test]
    fn gopro_max_lists_five_tracks() {
        let index = index_of("samples/gopro/max-heromode.mp4");
        assert_eq!(index.tracks.len(), 5);
        let video = track_of(&index, TrackKind::Video);
        assert_eq!(video.samples.len(), 315);
        assert_close(video.media_duration(), 10.51, 0.1051, "video duration");
        assert_eq!(video.handler_name.as_deref(), Some("GoPro AVC"));
    }

    #[test]
    fn rotation_90_is_read_from_tkhd_matrix() {
        let index = index_of("samples/misc/video_rotation_90.mp4");
        assert_eq!(track_of(&index, TrackKind::Video).rotation, 90);
        assert_eq!(
            track_of(&index_of("cases/base-10s.mp4"), TrackKind::Video).rotation,
            0
        );
    }

    #[test]
    fn rotation_matrix_maps_right_angles() {
        let unit = 0x1_0000;
        let matrix = |a: i32, b: i32, c: i32, d: i32| [a, b, 0, c, d, 0, 0, 0, 0x4000_0000];
        assert_eq!(rotation_from_matrix(&matrix(unit, 0, 0, unit)), 0);
        assert_eq!(rotation_from_matrix(&matrix(0, unit, -unit, 0)), 90);
        assert_eq!(rotation_from_matrix(&matrix(-unit, 0, 0, -unit)), 180);
        assert_eq!(rotation_from_matrix(&matrix(0, -unit, unit, 0)), 270);
    }

    #[test]
    fn counter_clip_has_30_frames_over_3s() {
        let index = index_of("samples/misc/counter.mp4");
        let video = track_of(&index, TrackKind::Video);
        assert_eq!(video.samples.len(), 30);
        assert_close(video.media_duration(), 3.0, 0.03, "duration");
    }

    #[test]
    fn in1_audio_and_video_durations_differ() {
        let index = index_of("samples/misc/in1.mp4");
        let audio = track_of(&index, TrackKind::Audio);
        let video = track_of(&index, TrackKind::Video);
        assert_close(audio.media_duration(), 7.03, 0.0703, "audio duration");
        assert_close(video.media_duration(), 6.97, 0.0697, "video duration");
    }

    #[test]
    fn handler_names_decode_pascal_and_c_strings() {
        assert_eq!(handler_name(b"\tGoPro MET"), Some("GoPro MET".to_string()));
        assert_eq!(
            handler_name(b"\x0cVideoHandler"),
            Some("VideoHandler".to_string())
        );
        assert_eq!(
            handler_name(b"SoundHandler\0"),
            Some("SoundHandler".to_string())
        );
        assert_eq!(handler_name(b"GoPro AVC  "), Some("GoPro AVC".to_string()));
        assert_eq!(handler_name(b"\0"), None);
    }

    #[test]
    fn chunk_out_of_range_is_malformed_not_panic() {
        let index = index_of("samples/misc/chunk_out_of_range.mp4");
        let reported = index.problems.iter().any(|p| {
            matches!(p, IndexProblem::Malformed { reason } if reason.en.contains("stco lists only"))
        });
        assert!(reported, "{:?}", index.problems);
    }

    #[test]
    fn moov_without_mdat_reports_truncated_tracks() {
        let index = index_of("samples/misc/bipbop_nonfragment_header.mp4");
        let truncated = index
            .problems
            .iter()
            .filter(|p| matches!(p, IndexProblem::Truncated { .. }))
            .count();
        assert_eq!(truncated, index.tracks.len());
        assert!(index.tracks.iter().all(|t| t.declared_samples > 0));
    }

    #[test]
    fn missing_mvhd_still_lists_fragmented_track() {
        let index = index_of("samples/misc/no_timescale.mp4");
        assert_eq!(index.creation_time, None);
        let video = track_of(&index, TrackKind::Video);
        assert_eq!(video.timescale, 2500);
        assert!(!video.samples.is_empty());
    }

    /// Rewrites a file laid out as ftyp, free, mdat, moov into ftyp, moov,
    /// free, mdat, shifting every stco entry by the size of moov.
    fn move_moov_to_front(source: &[u8]) -> Vec<u8> {
        let mut boxes = Vec::new();
        let mut at = 0;
        while at + 8 <= source.len() {
            let size = read_u32(source, at) as usize;
            boxes.push((&source[at + 4..at + 8], &source[at..at + size]));
            at += size;
        }
        let mut moov = boxes.iter().find(|b| b.0 == b"moov").unwrap().1.to_vec();
        let shift = moov.len() as u32;
        let mut search = 0;
        while let Some(found) = moov[search..].windows(4).position(|w| w == b"stco") {
            let table = search + found + 4;
            let count = read_u32(&moov, table + 4) as usize;
            for entry in 0..count {
                let field = table + 8 + entry * 4;
                let moved = read_u32(&moov, field) + shift;
                moov[field..field + 4].copy_from_slice(&moved.to_be_bytes());
            }
            search = table;
        }

        let mut out = Vec::with_capacity(source.len());
        out.extend_from_slice(boxes[0].1);
        out.extend_from_slice(&moov);
        for (box_type, bytes) in &boxes[1..] {
            if *box_type != b"moov" {
                out.extend_from_slice(bytes);
            }
        }
        out
    }

    #[test]
    fn truncated_copy_drops_samples_past_end() {
        let source = std::fs::read(fixture("cases/base-10s.mp4")).unwrap();
        let front = move_moov_to_front(&source);
        let dir = tempfile::tempdir().unwrap();

        let whole = dir.path().join("front.mp4");
        std::fs::write(&whole, &front).unwrap();
        let index = read_index(&whole).unwrap();
        assert!(index.problems.is_empty(), "{:?}", index.problems);
        assert_eq!(track_of(&index, TrackKind::Video).samples.len(), 300);

        let cut = dir.path().join("cut.mp4");
        std::fs::write(&cut, &front[..front.len() / 2]).unwrap();
        let index = read_index(&cut).unwrap();

        let video = track_of(&index, TrackKind::Video);
        assert!(video.samples.len() < 300);
        assert!(video.samples.len() > 100);
        let inside = video
            .samples
            .iter()
            .all(|s| s.offset + u64::from(s.size) <= index.file_size);
        assert!(inside);
        let truncated = index.problems.iter().any(|p| {
            matches!(p, IndexProblem::Truncated { declared_samples: 300, present_samples, track, .. }
                if *track == video.index && *present_samples == video.samples.len() as u64)
        });
        assert!(truncated, "{:?}", index.problems);
        assert!(!not_finalized(&index));
    }

    #[test]
    fn zero_timescale_track_is_kept_without_samples() {
        let mut source = std::fs::read(fixture("cases/hevc-hvc1.mp4")).unwrap();
        let mdhd = source.windows(4).position(|w| w == b"mdhd").unwrap();
        // version/flags, creation, modification, then the timescale.
        let timescale_at = mdhd + 4 + 4 + 4 + 4;
        source[timescale_at..timescale_at + 4].copy_from_slice(&[0, 0, 0, 0]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zero-timescale.mp4");
        std::fs::write(&path, &source).unwrap();
        let index = read_index(&path).unwrap();

        assert_eq!(index.tracks.len(), 1);
        assert!(index.tracks[0].samples.is_empty());
        assert_eq!(index.tracks[0].declared_samples, 30);
        let reported = index.problems.iter().any(|p| {
            matches!(p, IndexProblem::Malformed { reason } if reason.en.contains("timescale of 0"))
        });
        assert!(reported, "{:?}", index.problems);
    }

    /// Builds a box from its type and body.
    fn boxed(box_type: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(box_type);
        out.extend_from_slice(body);
        out
    }

    /// Builds a full box from its type, version, flags and fields.
    fn full_box(box_type: &[u8; 4], version: u8, flags: u32, fields: &[u32]) -> Vec<u8> {
        let mut body = ((u32::from(version) << 24) | flags).to_be_bytes().to_vec();
        for field in fields {
            body.extend_from_slice(&field.to_be_bytes());
        }
        boxed(box_type, &body)
    }

    /// Builds a trak with one sample entry and the given sample table boxes.
    fn synthetic_trak(
        track_id: u32,
        handler: &[u8; 4],
        timescale: u32,
        tables: &[Vec<u8>],
    ) -> Vec<u8> {
        let mut tkhd = vec![0u32; 21];
        tkhd[2] = track_id;
        tkhd[10] = 0x1_0000; // matrix a
        tkhd[14] = 0x1_0000; // matrix d
        tkhd[18] = 0x4000_0000; // matrix w
        let tkhd = full_box(b"tkhd", 0, 3, &tkhd);
        let mdhd = full_box(b"mdhd", 0, 0, &[0, 0, timescale, 0, 0]);
        let mut hdlr_fields = vec![0u32, u32::from_be_bytes(*handler), 0, 0, 0];
        hdlr_fields.push(0);
        let hdlr = full_box(b"hdlr", 0, 0, &hdlr_fields);
        let mut entry = vec![0u8; 28];
        entry[24..26].copy_from_slice(&64u16.to_be_bytes());
        entry[26..28].copy_from_slice(&48u16.to_be_bytes());
        let mut stsd = full_box(b"stsd", 0, 0, &[1]);
        stsd.extend_from_slice(&boxed(b"avc1", &entry));
        let stsd_len = stsd.len() as u32;
        stsd[..4].copy_from_slice(&stsd_len.to_be_bytes());

        let mut stbl_body = stsd;
        for table in tables {
            stbl_body.extend_from_slice(table);
        }
        let minf = boxed(b"minf", &boxed(b"stbl", &stbl_body));
        let mdia = boxed(b"mdia", &[mdhd, hdlr, minf].concat());
        boxed(b"trak", &[tkhd, mdia].concat())
    }

    fn write_temp(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("synthetic.mp4");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn huge_declared_counts_stay_bounded() {
        // Constant-size samples, with every count at its maximum, in a file
        // of a few hundred bytes.
        let tables = [
            full_box(b"stts", 0, 0, &[1, u32::MAX, 1]),
            full_box(b"stsc", 0, 0, &[1, 1, u32::MAX, 1]),
            full_box(b"stsz", 0, 0, &[1, u32::MAX]),
            full_box(b"stco", 0, 0, &[1, 0]),
        ];
        let trak = synthetic_trak(1, b"vide", 1000, &tables);
        let mvhd = full_box(b"mvhd", 0, 0, &[0, 0, 1000, 0]);
        let file = [
            boxed(b"ftyp", b"isom"),
            boxed(b"moov", &[mvhd, trak].concat()),
        ]
        .concat();
        let (_dir, path) = write_temp(&file);

        let started = Instant::now();
        let index = read_index(&path).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );

        let track = &index.tracks[0];
        assert_eq!(track.declared_samples, u64::from(u32::MAX));
        assert_eq!(
            track.samples.len() as u64,
            index.file_size,
            "one 1-byte sample per byte of file"
        );
        let capped = index.problems.iter().any(|p| {
            matches!(p, IndexProblem::Malformed { reason } if reason.en.contains("this reader indexes"))
        });
        assert!(capped, "{:?}", index.problems);
    }

    #[test]
    fn fragment_flags_offsets_and_empty_durations() {
        const NON_SYNC: u32 = SAMPLE_FLAG_NON_SYNC;
        let trex = |track_id: u32| full_box(b"trex", 0, 0, &[track_id, 1, 40, 10, NON_SYNC]);
        let mvex = boxed(b"mvex", &[trex(1), trex(2)].concat());
        let empty_tables = [
            full_box(b"stts", 0, 0, &[0]),
            full_box(b"stsc", 0, 0, &[0]),
            full_box(b"stsz", 0, 0, &[0, 0]),
            full_box(b"stco", 0, 0, &[0]),
        ];
        let moov = boxed(
            b"moov",
            &[
                full_box(b"mvhd", 0, 0, &[0, 0, 1000, 0]),
                synthetic_trak(1, b"vide", 1000, &empty_tables),
                synthetic_trak(2, b"soun", 1000, &empty_tables),
                mvex,
            ]
            .concat(),
        );
        let head = [boxed(b"ftyp", b"iso6"), moov].concat();

        // Fragment A. Track 1: default-base-is-moof, default size 5, tfdt v1
        // of 1000, trun v1 with data offset, first-sample flags, per-sample
        // durations and negative composition offsets. Track 2 follows with
        // no base: its data starts where track 1's ends.
        let traf_video = |data_offset: u32| {
            let tfhd = full_box(
                b"tfhd",
                0,
                TFHD_DEFAULT_BASE_IS_MOOF | TFHD_DEFAULT_SIZE,
                &[1, 5],
            );
            let mut tfdt = full_box(b"tfdt", 1, 0, &[]);
            tfdt.extend_from_slice(&1000u64.to_be_bytes());
            let tfdt_len = tfdt.len() as u32;
            tfdt[..4].copy_from_slice(&tfdt_len.to_be_bytes());
            let flags =
                TRUN_DATA_OFFSET | TRUN_FIRST_SAMPLE_FLAGS | TRUN_SAMPLE_DURATION | TRUN_SAMPLE_CTO;
            let minus_20 = (-20i32) as u32;
            let trun = full_box(
                b"trun",
                1,
                flags,
                &[3, data_offset, 0, 40, minus_20, 40, minus_20, 40, minus_20],
            );
            boxed(b"traf", &[tfhd, tfdt, trun].concat())
        };
        let traf_audio = {
            let tfhd = full_box(
                b"tfhd",
                0,
                TFHD_DEFAULT_SIZE | TFHD_DEFAULT_FLAGS,
                &[2, 4, 0],
            );
            let trun = full_box(b"trun", 0, 0, &[2]);
            boxed(b"traf", &[tfhd, trun].concat())
        };
        let mfhd = full_box(b"mfhd", 0, 0, &[1]);
        let probe = boxed(
            b"moof",
            &[mfhd.clone(), traf_video(0), traf_audio.clone()].concat(),
        );
        let data_offset = probe.len() as u32 + 8;
        let moof_a = boxed(
            b"moof",
            &[mfhd, traf_video(data_offset), traf_audio].concat(),
        );
        let mdat_a = boxed(b"mdat", &[0u8; 15 + 8]);

        // Fragment B: track 1 declares 1000 ticks with no samples.
        let tfhd_empty = full_box(
            b"tfhd",
            0,
            TFHD_DURATION_IS_EMPTY | TFHD_DEFAULT_DURATION,
            &[1, 1000],
        );
        let moof_b = boxed(
            b"moof",
            &[full_box(b"mfhd", 0, 0, &[2]), boxed(b"traf", &tfhd_empty)].concat(),
        );

        // Fragment C: one sample with an explicit base data offset.
        let moof_c_at = (head.len() + moof_a.len() + mdat_a.len() + moof_b.len()) as u64;
        let mut tfhd_c = full_box(b"tfhd", 0, TFHD_BASE_DATA_OFFSET, &[1]);
        tfhd_c.extend_from_slice(&moof_c_at.to_be_bytes());
        let tfhd_c_len = tfhd_c.len() as u32;
        tfhd_c[..4].copy_from_slice(&tfhd_c_len.to_be_bytes());
        let trun_c = |offset: u32| full_box(b"trun", 0, TRUN_DATA_OFFSET, &[1, offset]);
        let traf_c = |offset: u32| boxed(b"traf", &[tfhd_c.clone(), trun_c(offset)].concat());
        let mfhd_c = full_box(b"mfhd", 0, 0, &[3]);
        let moof_c_len = boxed(b"moof", &[mfhd_c.clone(), traf_c(0)].concat()).len() as u32;
        let moof_c = boxed(b"moof", &[mfhd_c, traf_c(moof_c_len + 8)].concat());
        let mdat_c = boxed(b"mdat", &[0u8; 10]);

        let moof_a_at = head.len() as u64;
        let file = [head, moof_a, mdat_a, moof_b, moof_c, mdat_c].concat();
        let (_dir, path) = write_temp(&file);
        let index = read_index(&path).unwrap();
        assert!(index.problems.is_empty(), "{:?}", index.problems);
        assert!(index.is_fragmented);

        let video = &index.tracks[0];
        let dts: Vec<i64> = video.samples.iter().map(|s| s.dts).collect();
        assert_eq!(
            dts,
            [1000, 1040, 1080, 2120],
            "the empty traf leaves a 1000-tick gap"
        );
        let pts: Vec<i64> = video.samples.iter().map(|s| s.pts).collect();
        assert_eq!(pts, [980, 1020, 1060, 2120]);
        let sync: Vec<bool> = video.samples.iter().map(|s| s.is_sync).collect();
        assert_eq!(sync, [true, false, false, false]);
        let mdat_a_data = moof_a_at + u64::from(data_offset);
        let offsets: Vec<u64> = video.samples.iter().map(|s| s.offset).collect();
        assert_eq!(
            offsets[..3],
            [mdat_a_data, mdat_a_data + 5, mdat_a_data + 10]
        );
        assert_eq!(offsets[3], moof_c_at + u64::from(moof_c_len) + 8);
        assert_eq!(video.samples[3].size, 10, "trex default size");

        let audio = &index.tracks[1];
        let audio_offsets: Vec<u64> = audio.samples.iter().map(|s| s.offset).collect();
        assert_eq!(audio_offsets, [mdat_a_data + 15, mdat_a_data + 19]);
        assert!(
            audio.samples.iter().all(|s| s.is_sync),
            "tfhd default flags override trex"
        );
        assert_eq!(audio.samples[1].dts, 40, "trex default duration");
    }

    #[test]
    fn damaged_and_fuzzed_files_never_panic() {
        let mut paths = Vec::new();
        for dir in ["samples/misc", "samples/dashcam-fuzz", "cases"] {
            for entry in std::fs::read_dir(fixture(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    paths.push(path);
                }
            }
        }
        assert!(paths.len() > 40);

        for path in paths {
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(|| read_index(&path));
            assert!(outcome.is_ok(), "{} panicked", path.display());
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{} took {:?}",
                path.display(),
                started.elapsed()
            );
        }
    }

    #[test]
    fn corrupted_copies_never_panic() {
        // Deterministic byte flips across the index of a real file, so every
        // table field gets hit by some damaged value.
        let source = std::fs::read(fixture("cases/editlist-delayed-start.mp4")).unwrap();
        let moov_at = source.windows(4).position(|w| w == b"moov").unwrap() - 4;
        let moov_len = read_u32(&source, moov_at) as usize;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flipped.mp4");

        let mut state = 0x2545_f491_u32;
        for round in 0..300 {
            let mut damaged = source.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let at = moov_at + (state as usize % moov_len);
                damaged[at] = match round % 3 {
                    0 => 0xff,
                    1 => 0x00,
                    _ => damaged[at] ^ (state >> 8) as u8,
                };
            }
            std::fs::write(&path, &damaged).unwrap();
            let outcome = std::panic::catch_unwind(|| read_index(&path));
            assert!(outcome.is_ok(), "round {round} panicked");
        }
    }
}
