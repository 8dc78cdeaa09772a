//! An MP4 writer that copies encoded samples unchanged from source files
//! into a new MP4 with its own sample tables, several tracks and edit lists.
//!
//! Evidence clips keep the camera's own encoded frames, so nothing here
//! decodes or rewrites a sample: a [`Movie`] lists, per track, where each
//! sample lies in which source file, its timing and sync flag, and the edit
//! list that says what is presented when (empty edits included, so a
//! recording gap stays visible). The writer lays out `ftyp`, `moov`, `mdat`
//! with the index first, so a player can start without seeking to the end,
//! and copies the sample bytes with as few reads as the layout allows.
//!
//! Sample entries (`avc1` with its `avcC`, `mp4a`, `tmcd`, `gpmd`, …) and the
//! handler and media-header boxes are copied verbatim from the source by
//! [`read_source_movie`], because a clip must describe its frames exactly as
//! the camera did. The boxes are written by hand: `mp4-atom` (0.x) parses a
//! sample entry it does not know into `Codec::Unknown` and drops its body,
//! which would lose GoPro's `gpmd`, `tmcd` and `fdsc` entries, and it
//! re-encodes known entries from parsed fields instead of their bytes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Bytes moved per read while copying samples: large enough that copying
/// runs at disk speed. The block also fits a core's L2 cache, so the write
/// and the clip's hashers read it from the cache rather than main memory.
const COPY_BUFFER_BYTES: usize = 1 << 20;

/// Largest `moov` read from a source: the sample tables of a day-long
/// recording take tens of MiB, so more than this is a damaged size field.
const MAX_SOURCE_MOOV_BYTES: u64 = 256 << 20;

/// Seconds from the MP4 epoch (1904-01-01 UTC) to the UNIX epoch.
const MP4_EPOCH_TO_UNIX_SECONDS: i64 = 2_082_844_800;

/// `tkhd` flags for a track that plays: enabled, in movie, in preview.
const TRACK_ENABLED_IN_MOVIE: u32 = 0x7;

/// Fixed-point 1.0 as `mvhd` rate (16.16) and volume (8.8) write it.
const RATE_ONE: u32 = 0x0001_0000;
const VOLUME_ONE: u16 = 0x0100;

/// The identity matrix of `mvhd` and `tkhd` (16.16 and 2.30 fixed point).
const IDENTITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// `mdhd` language code for "und" (undetermined), packed ISO 639-2/T.
const LANGUAGE_UNDETERMINED: u16 = 0x55c4;

#[derive(Debug, Error)]
pub enum Mp4WriteError {
    #[error("cannot read source {path}: {source}")]
    ReadSource { path: PathBuf, source: io::Error },
    #[error("source {path} ends before sample bytes {offset}..{end}")]
    SourceTooShort {
        path: PathBuf,
        offset: u64,
        end: u64,
    },
    #[error("cannot write the MP4 output: {0}")]
    Write(io::Error),
    #[error("invalid movie: {0}")]
    Invalid(String),
    #[error("cannot read the boxes of {path}: {reason}")]
    Source { path: PathBuf, reason: String },
}

/// A movie to write: its tracks and the files their samples come from.
#[derive(Clone, Debug)]
pub struct Movie {
    /// The whole `ftyp` box to write first; `None` writes an `isom` one.
    pub ftyp: Option<Vec<u8>>,
    /// Units per second of `mvhd`, `tkhd` and every edit duration.
    pub timescale: u32,
    /// Creation time as UNIX seconds, for `mvhd`, `tkhd` and `mdhd`.
    pub creation_time: i64,
    /// A whole `udta` box for `moov` (camera metadata), copied verbatim.
    pub user_data: Option<Vec<u8>>,
    /// Files that [`SampleRef::source`] indexes into.
    pub sources: Vec<PathBuf>,
    pub tracks: Vec<Track>,
}

/// One output track.
#[derive(Clone, Debug)]
pub struct Track {
    /// `tkhd` track_ID; keep the source's so that `tref` boxes stay right.
    pub track_id: u32,
    /// Units per second of every sample duration and composition offset.
    pub timescale: u32,
    pub boxes: TrackBoxes,
    /// The presentation of the track; empty writes no edit list.
    pub edits: Vec<EditEntry>,
    /// Samples in decode order.
    pub samples: Vec<SampleRef>,
}

/// Boxes a track copies from its source besides the samples.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackBoxes {
    pub handler_type: [u8; 4],
    pub header: TrackHeader,
    /// Packed ISO 639-2/T language of `mdhd`.
    pub language: u16,
    /// Whole sample entry boxes (the children of `stsd`), in order;
    /// [`SampleRef::description_index`] counts from 1 into this list.
    pub sample_entries: Vec<Vec<u8>>,
    /// Whole boxes of `trak` other than `tkhd`, `edts` and `mdia` (`tref`, `udta`).
    pub trak_extra: Vec<u8>,
    /// Whole boxes of `mdia` other than `mdhd` and `minf` (`hdlr`, `elng`).
    pub mdia_extra: Vec<u8>,
    /// Whole boxes of `minf` other than `stbl` (`vmhd`, `smhd`, `gmhd`, `nmhd`, `dinf`).
    pub minf_extra: Vec<u8>,
}

/// The presentation fields of `tkhd`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackHeader {
    pub flags: u32,
    pub layer: i16,
    pub alternate_group: i16,
    /// 8.8 fixed point; 1.0 for audio, 0 for everything else.
    pub volume: u16,
    pub matrix: [u32; 9],
    /// 16.16 fixed point display size.
    pub width: u32,
    pub height: u32,
}

/// One entry of the edit list, in the movie timescale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditEntry {
    /// Nothing of this track is presented for `duration`.
    Empty { duration: u64 },
    /// The media from `media_time` (track timescale, composition time) is
    /// presented for `duration` at normal rate.
    Media { duration: u64, media_time: i64 },
}

impl EditEntry {
    pub fn duration(&self) -> u64 {
        match *self {
            EditEntry::Empty { duration } | EditEntry::Media { duration, .. } => duration,
        }
    }
}

/// Location and timing of one sample's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleRef {
    /// Index into [`Movie::sources`].
    pub source: usize,
    pub offset: u64,
    pub size: u32,
    /// Decode duration in the track timescale.
    pub duration: u32,
    /// Presentation time minus decode time, in the track timescale.
    pub composition_offset: i32,
    pub is_sync: bool,
    /// 1-based index into [`TrackBoxes::sample_entries`].
    pub description_index: u32,
}

/// Size and layout of a written movie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    /// Offset of the first sample byte in the output.
    pub mdat_payload_offset: u64,
}

/// The boxes of a source file that a clip copies.
#[derive(Clone, Debug)]
pub struct SourceMovie {
    pub ftyp: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    pub timescale: u32,
    /// `mvhd` creation time as UNIX seconds.
    pub creation_time: i64,
    /// Per track, in file order: its `tkhd` track_ID and its boxes, or why
    /// the track's boxes cannot be copied.
    pub tracks: Vec<Result<(u32, TrackBoxes), String>>,
}

impl TrackHeader {
    /// Makes a header for a new track of the given kind and display size.
    pub fn new(handler_type: [u8; 4], width: u32, height: u32) -> TrackHeader {
        TrackHeader {
            flags: TRACK_ENABLED_IN_MOVIE,
            layer: 0,
            alternate_group: 0,
            volume: if &handler_type == b"soun" {
                VOLUME_ONE
            } else {
                0
            },
            matrix: IDENTITY_MATRIX,
            width: width << 16,
            height: height << 16,
        }
    }
}

impl TrackBoxes {
    /// Boxes for a track made here rather than copied, such as a re-encoded
    /// video track: a standard handler, media header and self-contained data
    /// reference around the given sample entry.
    pub fn new(
        handler_type: [u8; 4],
        handler_name: &str,
        sample_entry: Vec<u8>,
        width: u32,
        height: u32,
    ) -> TrackBoxes {
        let mut hdlr = Vec::new();
        hdlr.extend_from_slice(&[0; 8]);
        hdlr.extend_from_slice(&handler_type);
        hdlr.extend_from_slice(&[0; 12]);
        hdlr.extend_from_slice(handler_name.as_bytes());
        hdlr.push(0);
        let media_header = match &handler_type {
            b"vide" => full_box(b"vmhd", 0, 1, &[0; 8]),
            b"soun" => full_box(b"smhd", 0, 0, &[0; 4]),
            _ => full_box(b"nmhd", 0, 0, &[]),
        };
        let mut minf_extra = media_header;
        minf_extra.extend_from_slice(&data_information());
        TrackBoxes {
            handler_type,
            header: TrackHeader::new(handler_type, width, height),
            language: LANGUAGE_UNDETERMINED,
            sample_entries: vec![sample_entry],
            trak_extra: Vec::new(),
            mdia_extra: plain_box(b"hdlr", &hdlr),
            minf_extra,
        }
    }
}

/// Writes a movie to `output` and returns its size.
pub fn write_movie(movie: &Movie, output: &mut dyn Write) -> Result<Written, Mp4WriteError> {
    validate(movie)?;
    let layout = Layout::plan(movie);

    let ftyp = movie.ftyp.clone().unwrap_or_else(default_ftyp);
    let mdat_header_len: u64 = if layout.payload_bytes + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };

    // The chunk offsets depend on the size of moov, and the size of moov
    // depends only on whether they need 64 bits, so moov is sized with a
    // zero base first and rebuilt with the real one.
    let use_co64 = ftyp.len() as u64 + layout.payload_bytes + mdat_header_len + (64 << 20)
        > u64::from(u32::MAX);
    let probe_moov = build_moov(movie, &layout, 0, use_co64)?;
    let payload_offset = ftyp.len() as u64 + probe_moov.len() as u64 + mdat_header_len;
    let moov = build_moov(movie, &layout, payload_offset, use_co64)?;
    debug_assert_eq!(moov.len(), probe_moov.len());

    output.write_all(&ftyp).map_err(Mp4WriteError::Write)?;
    output.write_all(&moov).map_err(Mp4WriteError::Write)?;
    if mdat_header_len == 16 {
        output
            .write_all(&1u32.to_be_bytes())
            .map_err(Mp4WriteError::Write)?;
        output.write_all(b"mdat").map_err(Mp4WriteError::Write)?;
        output
            .write_all(&(layout.payload_bytes + 16).to_be_bytes())
            .map_err(Mp4WriteError::Write)?;
    } else {
        output
            .write_all(&((layout.payload_bytes + 8) as u32).to_be_bytes())
            .map_err(Mp4WriteError::Write)?;
        output.write_all(b"mdat").map_err(Mp4WriteError::Write)?;
    }
    copy_payload(movie, &layout, output)?;
    output.flush().map_err(Mp4WriteError::Write)?;

    Ok(Written {
        bytes: payload_offset + layout.payload_bytes,
        mdat_payload_offset: payload_offset,
    })
}

fn validate(movie: &Movie) -> Result<(), Mp4WriteError> {
    let invalid = |text: String| Err(Mp4WriteError::Invalid(text));
    if movie.timescale == 0 {
        return invalid("the movie timescale is zero".into());
    }
    let mut ids = std::collections::HashSet::new();
    for track in &movie.tracks {
        if track.track_id == 0 || !ids.insert(track.track_id) {
            return invalid(format!("track id {} is zero or repeated", track.track_id));
        }
        if track.timescale == 0 {
            return invalid(format!("track {} has a zero timescale", track.track_id));
        }
        if track.boxes.sample_entries.is_empty() {
            return invalid(format!("track {} has no sample entry", track.track_id));
        }
        for sample in &track.samples {
            if sample.source >= movie.sources.len() {
                return invalid(format!(
                    "track {} names source {} of {}",
                    track.track_id,
                    sample.source,
                    movie.sources.len()
                ));
            }
            if sample.description_index == 0
                || sample.description_index as usize > track.boxes.sample_entries.len()
            {
                return invalid(format!(
                    "track {} names sample entry {} of {}",
                    track.track_id,
                    sample.description_index,
                    track.boxes.sample_entries.len()
                ));
            }
        }
    }
    Ok(())
}

/// Chunks of consecutive samples of one track whose bytes are contiguous in
/// one source, placed in the output in decode-time order across tracks.
struct Layout {
    /// Per track, its chunks in decode order.
    chunks: Vec<Vec<Chunk>>,
    /// (track, chunk) in output order.
    order: Vec<(usize, usize)>,
    payload_bytes: u64,
}

#[derive(Clone, Copy, Debug)]
struct Chunk {
    first_sample: usize,
    samples: usize,
    description_index: u32,
    source: usize,
    source_offset: u64,
    bytes: u64,
    /// Decode time of the first sample in seconds, for interleaving.
    start_seconds: f64,
    /// Offset within the mdat payload, set once the order is known.
    payload_offset: u64,
}

impl Layout {
    fn plan(movie: &Movie) -> Layout {
        let mut chunks: Vec<Vec<Chunk>> = Vec::new();
        for track in &movie.tracks {
            let mut track_chunks: Vec<Chunk> = Vec::new();
            let mut dts: u64 = 0;
            for (i, sample) in track.samples.iter().enumerate() {
                let continues = track_chunks.last().is_some_and(|c: &Chunk| {
                    c.source == sample.source
                        && c.description_index == sample.description_index
                        && c.source_offset + c.bytes == sample.offset
                });
                if continues {
                    let chunk = track_chunks.last_mut().expect("checked above");
                    chunk.samples += 1;
                    chunk.bytes += u64::from(sample.size);
                } else {
                    track_chunks.push(Chunk {
                        first_sample: i,
                        samples: 1,
                        description_index: sample.description_index,
                        source: sample.source,
                        source_offset: sample.offset,
                        bytes: u64::from(sample.size),
                        start_seconds: dts as f64 / f64::from(track.timescale),
                        payload_offset: 0,
                    });
                }
                dts += u64::from(sample.duration);
            }
            chunks.push(track_chunks);
        }

        let mut order: Vec<(usize, usize)> = chunks
            .iter()
            .enumerate()
            .flat_map(|(t, list)| (0..list.len()).map(move |c| (t, c)))
            .collect();
        order.sort_by(|a, b| {
            let (ca, cb) = (&chunks[a.0][a.1], &chunks[b.0][b.1]);
            ca.start_seconds
                .total_cmp(&cb.start_seconds)
                .then(ca.source.cmp(&cb.source))
                .then(ca.source_offset.cmp(&cb.source_offset))
                .then(a.0.cmp(&b.0))
        });

        let mut position = 0u64;
        for &(t, c) in &order {
            chunks[t][c].payload_offset = position;
            position += chunks[t][c].bytes;
        }
        Layout {
            chunks,
            order,
            payload_bytes: position,
        }
    }
}

/// Copies every chunk in output order, merging reads of bytes that follow
/// each other in one source, which for a camera file is nearly all of them.
fn copy_payload(
    movie: &Movie,
    layout: &Layout,
    output: &mut dyn Write,
) -> Result<(), Mp4WriteError> {
    let mut files = Vec::with_capacity(movie.sources.len());
    for path in &movie.sources {
        let file = File::open(path).map_err(|source| Mp4WriteError::ReadSource {
            path: path.clone(),
            source,
        })?;
        files.push(file);
    }

    let mut runs: Vec<(usize, u64, u64)> = Vec::new();
    for &(t, c) in &layout.order {
        let chunk = &layout.chunks[t][c];
        match runs.last_mut() {
            Some(run) if run.0 == chunk.source && run.1 + run.2 == chunk.source_offset => {
                run.2 += chunk.bytes
            }
            _ => runs.push((chunk.source, chunk.source_offset, chunk.bytes)),
        }
    }

    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    for (source, offset, length) in runs {
        let file = &files[source];
        let mut done = 0u64;
        while done < length {
            let want = (length - done).min(COPY_BUFFER_BYTES as u64) as usize;
            let position = offset + done;
            let read = read_full_at(file, &mut buffer[..want], position).map_err(|e| {
                Mp4WriteError::ReadSource {
                    path: movie.sources[source].clone(),
                    source: e,
                }
            })?;
            if read < want {
                return Err(Mp4WriteError::SourceTooShort {
                    path: movie.sources[source].clone(),
                    offset: position,
                    end: offset + length,
                });
            }
            output
                .write_all(&buffer[..want])
                .map_err(Mp4WriteError::Write)?;
            done += want as u64;
        }
    }
    Ok(())
}

fn read_full_at(file: &File, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

// ---------------------------------------------------------------------------
// Box building

fn plain_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(body.len() + 4);
    inner.push(version);
    inner.extend_from_slice(&flags.to_be_bytes()[1..]);
    inner.extend_from_slice(body);
    plain_box(kind, &inner)
}

fn default_ftyp() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(b"isom");
    body.extend_from_slice(&0x200u32.to_be_bytes());
    for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
        body.extend_from_slice(brand);
    }
    plain_box(b"ftyp", &body)
}

/// A `dinf` whose single `url ` entry says the media is in this file.
fn data_information() -> Vec<u8> {
    let url = full_box(b"url ", 0, 1, &[]);
    let mut dref = 1u32.to_be_bytes().to_vec();
    dref.extend_from_slice(&url);
    plain_box(b"dinf", &full_box(b"dref", 0, 0, &dref))
}

fn mp4_time(unix_seconds: i64) -> u64 {
    (unix_seconds + MP4_EPOCH_TO_UNIX_SECONDS).max(0) as u64
}

fn push_matrix(out: &mut Vec<u8>, matrix: &[u32; 9]) {
    for value in matrix {
        out.extend_from_slice(&value.to_be_bytes());
    }
}

fn track_presentation(track: &Track, movie_timescale: u32) -> u64 {
    if track.edits.is_empty() {
        let media: u64 = track.samples.iter().map(|s| u64::from(s.duration)).sum();
        rescale(media, track.timescale, movie_timescale)
    } else {
        track.edits.iter().map(EditEntry::duration).sum()
    }
}

fn rescale(value: u64, from: u32, to: u32) -> u64 {
    ((u128::from(value) * u128::from(to) + u128::from(from) / 2) / u128::from(from)) as u64
}

fn build_moov(
    movie: &Movie,
    layout: &Layout,
    payload_offset: u64,
    use_co64: bool,
) -> Result<Vec<u8>, Mp4WriteError> {
    let time = mp4_time(movie.creation_time);
    let duration = movie
        .tracks
        .iter()
        .map(|t| track_presentation(t, movie.timescale))
        .max()
        .unwrap_or(0);
    let next_track_id = movie.tracks.iter().map(|t| t.track_id).max().unwrap_or(0) + 1;

    let mut mvhd = Vec::new();
    mvhd.extend_from_slice(&time.to_be_bytes());
    mvhd.extend_from_slice(&time.to_be_bytes());
    mvhd.extend_from_slice(&movie.timescale.to_be_bytes());
    mvhd.extend_from_slice(&duration.to_be_bytes());
    mvhd.extend_from_slice(&RATE_ONE.to_be_bytes());
    mvhd.extend_from_slice(&VOLUME_ONE.to_be_bytes());
    mvhd.extend_from_slice(&[0; 10]);
    push_matrix(&mut mvhd, &IDENTITY_MATRIX);
    mvhd.extend_from_slice(&[0; 24]);
    mvhd.extend_from_slice(&next_track_id.to_be_bytes());

    let mut body = full_box(b"mvhd", 1, 0, &mvhd);
    for (t, track) in movie.tracks.iter().enumerate() {
        body.extend_from_slice(&build_trak(
            movie,
            track,
            &layout.chunks[t],
            time,
            payload_offset,
            use_co64,
        ));
    }
    if let Some(udta) = &movie.user_data {
        body.extend_from_slice(udta);
    }
    Ok(plain_box(b"moov", &body))
}

fn build_trak(
    movie: &Movie,
    track: &Track,
    chunks: &[Chunk],
    time: u64,
    payload_offset: u64,
    use_co64: bool,
) -> Vec<u8> {
    let header = &track.boxes.header;
    let presented = track_presentation(track, movie.timescale);

    let mut tkhd = Vec::new();
    tkhd.extend_from_slice(&time.to_be_bytes());
    tkhd.extend_from_slice(&time.to_be_bytes());
    tkhd.extend_from_slice(&track.track_id.to_be_bytes());
    tkhd.extend_from_slice(&[0; 4]);
    tkhd.extend_from_slice(&presented.to_be_bytes());
    tkhd.extend_from_slice(&[0; 8]);
    tkhd.extend_from_slice(&header.layer.to_be_bytes());
    tkhd.extend_from_slice(&header.alternate_group.to_be_bytes());
    tkhd.extend_from_slice(&header.volume.to_be_bytes());
    tkhd.extend_from_slice(&[0; 2]);
    push_matrix(&mut tkhd, &header.matrix);
    tkhd.extend_from_slice(&header.width.to_be_bytes());
    tkhd.extend_from_slice(&header.height.to_be_bytes());

    let mut body = full_box(b"tkhd", 1, header.flags & 0x00ff_ffff, &tkhd);
    if !track.edits.is_empty() {
        body.extend_from_slice(&plain_box(b"edts", &build_elst(&track.edits)));
    }
    body.extend_from_slice(&build_mdia(track, chunks, time, payload_offset, use_co64));
    body.extend_from_slice(&track.boxes.trak_extra);
    plain_box(b"trak", &body)
}

fn build_elst(edits: &[EditEntry]) -> Vec<u8> {
    let mut body = (edits.len() as u32).to_be_bytes().to_vec();
    for edit in edits {
        let (duration, media_time) = match *edit {
            EditEntry::Empty { duration } => (duration, -1i64),
            EditEntry::Media {
                duration,
                media_time,
            } => (duration, media_time),
        };
        body.extend_from_slice(&duration.to_be_bytes());
        body.extend_from_slice(&media_time.to_be_bytes());
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
    }
    full_box(b"elst", 1, 0, &body)
}

/// The media duration of `mdhd`: up to the end of the last sample shown,
/// which with reordered frames can lie past the end of the last decode
/// time, and demuxers clip edits to it.
fn media_duration(track: &Track) -> u64 {
    let mut dts: i64 = 0;
    let mut end: i64 = 0;
    for sample in &track.samples {
        end = end.max(dts + i64::from(sample.composition_offset) + i64::from(sample.duration));
        dts += i64::from(sample.duration);
    }
    dts.max(end).max(0) as u64
}

fn build_mdia(
    track: &Track,
    chunks: &[Chunk],
    time: u64,
    payload_offset: u64,
    use_co64: bool,
) -> Vec<u8> {
    let media_duration = media_duration(track);
    let mut mdhd = Vec::new();
    mdhd.extend_from_slice(&time.to_be_bytes());
    mdhd.extend_from_slice(&time.to_be_bytes());
    mdhd.extend_from_slice(&track.timescale.to_be_bytes());
    mdhd.extend_from_slice(&media_duration.to_be_bytes());
    mdhd.extend_from_slice(&track.boxes.language.to_be_bytes());
    mdhd.extend_from_slice(&[0; 2]);

    let mut minf = track.boxes.minf_extra.clone();
    minf.extend_from_slice(&build_stbl(track, chunks, payload_offset, use_co64));

    let mut body = full_box(b"mdhd", 1, 0, &mdhd);
    body.extend_from_slice(&track.boxes.mdia_extra);
    body.extend_from_slice(&plain_box(b"minf", &minf));
    plain_box(b"mdia", &body)
}

fn build_stbl(track: &Track, chunks: &[Chunk], payload_offset: u64, use_co64: bool) -> Vec<u8> {
    let samples = &track.samples;

    let mut stsd = (track.boxes.sample_entries.len() as u32)
        .to_be_bytes()
        .to_vec();
    for entry in &track.boxes.sample_entries {
        stsd.extend_from_slice(entry);
    }
    let mut body = full_box(b"stsd", 0, 0, &stsd);

    let durations = run_lengths(samples.iter().map(|s| s.duration));
    let mut stts = (durations.len() as u32).to_be_bytes().to_vec();
    for (count, duration) in durations {
        stts.extend_from_slice(&count.to_be_bytes());
        stts.extend_from_slice(&duration.to_be_bytes());
    }
    body.extend_from_slice(&full_box(b"stts", 0, 0, &stts));

    if samples.iter().any(|s| s.composition_offset != 0) {
        let has_negative = samples.iter().any(|s| s.composition_offset < 0);
        let offsets = run_lengths(samples.iter().map(|s| s.composition_offset));
        let mut ctts = (offsets.len() as u32).to_be_bytes().to_vec();
        for (count, offset) in offsets {
            ctts.extend_from_slice(&count.to_be_bytes());
            ctts.extend_from_slice(&offset.to_be_bytes());
        }
        body.extend_from_slice(&full_box(b"ctts", u8::from(has_negative), 0, &ctts));
    }

    if samples.iter().any(|s| !s.is_sync) {
        let sync: Vec<u32> = samples
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_sync)
            .map(|(i, _)| i as u32 + 1)
            .collect();
        let mut stss = (sync.len() as u32).to_be_bytes().to_vec();
        for number in sync {
            stss.extend_from_slice(&number.to_be_bytes());
        }
        body.extend_from_slice(&full_box(b"stss", 0, 0, &stss));
    }

    let mut stsc_entries: Vec<(u32, u32, u32)> = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let entry = (i as u32 + 1, chunk.samples as u32, chunk.description_index);
        if !stsc_entries
            .last()
            .is_some_and(|last| last.1 == entry.1 && last.2 == entry.2)
        {
            stsc_entries.push(entry);
        }
    }
    let mut stsc = (stsc_entries.len() as u32).to_be_bytes().to_vec();
    for (first, count, index) in stsc_entries {
        stsc.extend_from_slice(&first.to_be_bytes());
        stsc.extend_from_slice(&count.to_be_bytes());
        stsc.extend_from_slice(&index.to_be_bytes());
    }
    body.extend_from_slice(&full_box(b"stsc", 0, 0, &stsc));

    let first_size = samples.first().map_or(0, |s| s.size);
    let mut stsz = Vec::new();
    if samples.iter().all(|s| s.size == first_size) && !samples.is_empty() {
        stsz.extend_from_slice(&first_size.to_be_bytes());
        stsz.extend_from_slice(&(samples.len() as u32).to_be_bytes());
    } else {
        stsz.extend_from_slice(&0u32.to_be_bytes());
        stsz.extend_from_slice(&(samples.len() as u32).to_be_bytes());
        for sample in samples {
            stsz.extend_from_slice(&sample.size.to_be_bytes());
        }
    }
    body.extend_from_slice(&full_box(b"stsz", 0, 0, &stsz));

    let mut offsets = (chunks.len() as u32).to_be_bytes().to_vec();
    for chunk in chunks {
        let offset = payload_offset + chunk.payload_offset;
        if use_co64 {
            offsets.extend_from_slice(&offset.to_be_bytes());
        } else {
            offsets.extend_from_slice(&(offset as u32).to_be_bytes());
        }
    }
    body.extend_from_slice(&full_box(
        if use_co64 { b"co64" } else { b"stco" },
        0,
        0,
        &offsets,
    ));

    debug_assert!(chunks.iter().all(|c| c.first_sample < samples.len().max(1)));
    plain_box(b"stbl", &body)
}

fn run_lengths<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Vec<(u32, T)> {
    let mut runs: Vec<(u32, T)> = Vec::new();
    for value in values {
        match runs.last_mut() {
            Some(run) if run.1 == value => run.0 += 1,
            _ => runs.push((1, value)),
        }
    }
    runs
}

// ---------------------------------------------------------------------------
// Reading the boxes to copy from a source

/// One box found in a byte slice: its type, the whole box, and its body.
struct RawBox<'a> {
    kind: [u8; 4],
    whole: &'a [u8],
    body: &'a [u8],
}

/// Splits a byte slice into its boxes. It stops at the first box that does
/// not fit, so a damaged size can never read out of bounds.
fn boxes_in(data: &[u8]) -> Vec<RawBox<'_>> {
    let mut found = Vec::new();
    let mut at = 0usize;
    while data.len() - at >= 8 {
        let size32 = u32::from_be_bytes(data[at..at + 4].try_into().expect("4 bytes"));
        let kind: [u8; 4] = data[at + 4..at + 8].try_into().expect("4 bytes");
        let (header, size) = match size32 {
            0 => (8usize, (data.len() - at) as u64),
            1 if data.len() - at >= 16 => (
                16usize,
                u64::from_be_bytes(data[at + 8..at + 16].try_into().expect("8 bytes")),
            ),
            1 => break,
            n => (8usize, u64::from(n)),
        };
        if size < header as u64 || size > (data.len() - at) as u64 {
            break;
        }
        let end = at + size as usize;
        found.push(RawBox {
            kind,
            whole: &data[at..end],
            body: &data[at + header..end],
        });
        at = end;
    }
    found
}

fn find<'a>(boxes: &'a [RawBox<'a>], kind: &[u8; 4]) -> Option<&'a RawBox<'a>> {
    boxes.iter().find(|b| &b.kind == kind)
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
}

fn be_u64(data: &[u8], at: usize) -> Option<u64> {
    data.get(at..at + 8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

/// Reads `ftyp`, `moov/udta` and each track's boxes from an MP4 file,
/// seeking past `mdat` so that no sample payload is read.
pub fn read_source_movie(path: &Path) -> Result<SourceMovie, Mp4WriteError> {
    let fail = |reason: String| Mp4WriteError::Source {
        path: path.to_path_buf(),
        reason,
    };
    let io_fail = |e: io::Error| fail(e.to_string());
    let mut file = File::open(path).map_err(io_fail)?;
    let file_size = file.metadata().map_err(io_fail)?.len();

    let mut ftyp = None;
    let mut moov = None;
    let mut at = 0u64;
    while at + 8 <= file_size {
        file.seek(SeekFrom::Start(at)).map_err(io_fail)?;
        let mut header = [0u8; 16];
        let available = (file_size - at).min(16) as usize;
        file.read_exact(&mut header[..available]).map_err(io_fail)?;
        let size32 = u32::from_be_bytes(header[0..4].try_into().expect("4 bytes"));
        let kind: [u8; 4] = header[4..8].try_into().expect("4 bytes");
        let size = match size32 {
            0 => file_size - at,
            1 if available == 16 => u64::from_be_bytes(header[8..16].try_into().expect("8 bytes")),
            1 => return Err(fail(format!("box at {at} has a truncated 64-bit size"))),
            n => u64::from(n),
        };
        if size < 8 || at.saturating_add(size) > file_size {
            break;
        }
        if &kind == b"ftyp" || &kind == b"moov" {
            if &kind == b"moov" && size > MAX_SOURCE_MOOV_BYTES {
                return Err(fail(format!(
                    "moov of {size} bytes exceeds the {MAX_SOURCE_MOOV_BYTES}-byte limit"
                )));
            }
            let mut whole = vec![0u8; size as usize];
            file.seek(SeekFrom::Start(at)).map_err(io_fail)?;
            file.read_exact(&mut whole).map_err(io_fail)?;
            if &kind == b"ftyp" {
                ftyp = Some(whole);
            } else {
                moov = Some(whole);
            }
        }
        at += size;
    }
    let moov = moov.ok_or_else(|| fail("no moov box: the recording was not finalized".into()))?;
    let moov_boxes = boxes_in(&moov);
    let moov_body = moov_boxes.first().map(|b| b.body).unwrap_or(&[]);
    let children = boxes_in(moov_body);

    let mvhd = find(&children, b"mvhd").ok_or_else(|| fail("moov has no mvhd".into()))?;
    let (timescale, creation) = match mvhd.body.first() {
        Some(1) => (be_u32(mvhd.body, 20), be_u64(mvhd.body, 4)),
        _ => (be_u32(mvhd.body, 12), be_u32(mvhd.body, 4).map(u64::from)),
    };
    let timescale = timescale.ok_or_else(|| fail("mvhd is too short".into()))?;
    let creation_time = creation.map_or(0, |c| c as i64 - MP4_EPOCH_TO_UNIX_SECONDS);

    let mut tracks = Vec::new();
    for trak in children.iter().filter(|b| &b.kind == b"trak") {
        tracks.push(read_track_boxes(trak.body));
    }

    Ok(SourceMovie {
        ftyp,
        user_data: find(&children, b"udta").map(|b| b.whole.to_vec()),
        timescale,
        creation_time,
        tracks,
    })
}

fn read_track_boxes(trak: &[u8]) -> Result<(u32, TrackBoxes), String> {
    let children = boxes_in(trak);
    let tkhd = find(&children, b"tkhd").ok_or("trak has no tkhd")?.body;
    let version = tkhd.first().copied().unwrap_or(0);
    let flags = be_u32(tkhd, 0).ok_or("tkhd is too short")? & 0x00ff_ffff;
    let (id_at, rest_at) = if version == 1 { (20, 36) } else { (12, 24) };
    let track_id = be_u32(tkhd, id_at).ok_or("tkhd is too short")?;
    // After the duration: 8 reserved bytes, layer, alternate group, volume,
    // 2 reserved bytes, the matrix, width and height.
    let fields = tkhd
        .get(rest_at + 8..rest_at + 8 + 52)
        .ok_or("tkhd is too short")?;
    let mut matrix = [0u32; 9];
    for (i, value) in matrix.iter_mut().enumerate() {
        *value = be_u32(fields, 8 + i * 4).expect("inside the 52 bytes");
    }
    let header = TrackHeader {
        flags,
        layer: i16::from_be_bytes([fields[0], fields[1]]),
        alternate_group: i16::from_be_bytes([fields[2], fields[3]]),
        volume: u16::from_be_bytes([fields[4], fields[5]]),
        matrix,
        width: be_u32(fields, 44).expect("inside the 52 bytes"),
        height: be_u32(fields, 48).expect("inside the 52 bytes"),
    };

    let mdia = find(&children, b"mdia").ok_or("trak has no mdia")?;
    let mdia_children = boxes_in(mdia.body);
    let mdhd = find(&mdia_children, b"mdhd")
        .ok_or("mdia has no mdhd")?
        .body;
    let language_at = if mdhd.first() == Some(&1) { 32 } else { 20 };
    let language = mdhd
        .get(language_at..language_at + 2)
        .map_or(LANGUAGE_UNDETERMINED, |b| u16::from_be_bytes([b[0], b[1]]));
    let hdlr = find(&mdia_children, b"hdlr")
        .ok_or("mdia has no hdlr")?
        .body;
    let handler_type: [u8; 4] = hdlr
        .get(8..12)
        .ok_or("hdlr is too short")?
        .try_into()
        .expect("4 bytes");

    let minf = find(&mdia_children, b"minf").ok_or("mdia has no minf")?;
    let minf_children = boxes_in(minf.body);
    let stbl = find(&minf_children, b"stbl").ok_or("minf has no stbl")?;
    let stsd = find(&boxes_in(stbl.body), b"stsd")
        .ok_or("stbl has no stsd")?
        .body
        .to_vec();
    let declared = be_u32(&stsd, 4).ok_or("stsd is too short")? as usize;
    let entries: Vec<Vec<u8>> = boxes_in(stsd.get(8..).unwrap_or(&[]))
        .into_iter()
        .take(declared)
        .map(|b| b.whole.to_vec())
        .collect();
    if entries.is_empty() {
        return Err(format!("track {track_id} has no sample entry"));
    }

    let concat = |list: &[RawBox], skip: &[&[u8; 4]]| -> Vec<u8> {
        list.iter()
            .filter(|b| !skip.contains(&&b.kind))
            .flat_map(|b| b.whole.iter().copied())
            .collect()
    };
    Ok((
        track_id,
        TrackBoxes {
            handler_type,
            header,
            language,
            sample_entries: entries,
            trak_extra: concat(&children, &[b"tkhd", b"edts", b"mdia"]),
            mdia_extra: concat(&mdia_children, &[b"mdhd", b"minf"]),
            minf_extra: concat(&minf_children, &[b"stbl"]),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::index::read_index;

    fn fixture(relative: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(relative)
    }

    /// Builds a movie that copies every track of a source whole.
    fn copy_of(path: &Path) -> Movie {
        let source = read_source_movie(path).unwrap();
        let index = read_index(path).unwrap();
        let tracks = index
            .tracks
            .iter()
            .zip(source.tracks)
            .map(|(track, read)| (track, read.unwrap()))
            .map(|(track, (id, boxes))| Track {
                track_id: id,
                timescale: track.timescale,
                boxes,
                edits: Vec::new(),
                samples: track
                    .samples
                    .iter()
                    .map(|s| SampleRef {
                        source: 0,
                        offset: s.offset,
                        size: s.size,
                        duration: s.duration,
                        composition_offset: (s.pts - s.dts) as i32,
                        is_sync: s.is_sync,
                        description_index: 1,
                    })
                    .collect(),
            })
            .collect();
        Movie {
            ftyp: source.ftyp,
            timescale: source.timescale,
            creation_time: source.creation_time,
            user_data: source.user_data,
            sources: vec![path.to_path_buf()],
            tracks,
        }
    }

    fn sample_bytes(path: &Path, sample: &crate::media::index::Sample) -> Vec<u8> {
        let file = File::open(path).unwrap();
        let mut bytes = vec![0u8; sample.size as usize];
        file.read_exact_at(&mut bytes, sample.offset).unwrap();
        bytes
    }

    #[test]
    fn whole_copy_keeps_every_sample_and_timestamp() {
        let source = fixture("cases/base-10s.mp4");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy.mp4");
        let mut file = File::create(&out).unwrap();
        write_movie(&copy_of(&source), &mut file).unwrap();
        drop(file);

        let before = read_index(&source).unwrap();
        let after = read_index(&out).unwrap();
        assert_eq!(after.tracks.len(), before.tracks.len());
        for (a, b) in after.tracks.iter().zip(&before.tracks) {
            assert_eq!(a.codec, b.codec);
            assert_eq!(a.samples.len(), b.samples.len());
            for (sa, sb) in a.samples.iter().zip(&b.samples) {
                assert_eq!(
                    (sa.dts, sa.pts, sa.duration, sa.is_sync),
                    (sb.dts, sb.pts, sb.duration, sb.is_sync)
                );
                assert_eq!(sample_bytes(&out, sa), sample_bytes(&source, sb));
            }
        }
    }

    #[test]
    fn sample_entries_are_copied_verbatim() {
        let source = read_source_movie(&fixture("samples/gopro/karma.mp4")).unwrap();
        let codes: Vec<String> = source
            .tracks
            .iter()
            .map(|read| {
                String::from_utf8_lossy(&read.as_ref().unwrap().1.sample_entries[0][4..8])
                    .to_string()
            })
            .collect();
        assert_eq!(codes, ["avc1", "mp4a", "tmcd", "gpmd", "fdsc"]);

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("karma.mp4");
        let mut file = File::create(&out).unwrap();
        write_movie(&copy_of(&fixture("samples/gopro/karma.mp4")), &mut file).unwrap();
        drop(file);
        let copied = read_source_movie(&out).unwrap();
        for (a, b) in copied.tracks.iter().zip(&source.tracks) {
            let (a, b) = (&a.as_ref().unwrap().1, &b.as_ref().unwrap().1);
            assert_eq!(a.sample_entries, b.sample_entries);
            assert_eq!(a.handler_type, b.handler_type);
        }
    }

    #[test]
    fn empty_edit_delays_the_track() {
        let source = fixture("cases/base-10s.mp4");
        let mut movie = copy_of(&source);
        movie.timescale = 1000;
        for track in &mut movie.tracks {
            let media: u64 = track.samples.iter().map(|s| u64::from(s.duration)).sum();
            // The first sample's composition offset is the reordering delay,
            // so the first frame is shown at that media time.
            let first_shown = i64::from(track.samples[0].composition_offset);
            track.edits = vec![
                EditEntry::Empty { duration: 500 },
                EditEntry::Media {
                    duration: rescale(media, track.timescale, 1000) - 200,
                    media_time: first_shown,
                },
            ];
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("delayed.mp4");
        let mut file = File::create(&out).unwrap();
        write_movie(&movie, &mut file).unwrap();
        drop(file);

        let index = read_index(&out).unwrap();
        let start = index.tracks[0].presentation_start();
        assert!((start - 0.5).abs() < 1e-9, "video starts at {start}");
    }

    #[test]
    fn invalid_description_index_is_rejected() {
        let mut movie = copy_of(&fixture("cases/base-10s.mp4"));
        movie.tracks[0].samples[0].description_index = 2;
        let error = write_movie(&movie, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("sample entry 2 of 1"), "{error}");
    }

    #[test]
    fn new_track_boxes_hold_a_self_contained_data_reference() {
        let boxes = TrackBoxes::new(
            *b"vide",
            "VideoHandler",
            plain_box(b"avc1", &[0; 78]),
            320,
            240,
        );
        assert_eq!(boxes.header.width, 320 << 16);
        let minf = boxes_in(&boxes.minf_extra);
        let kinds: Vec<&[u8; 4]> = minf.iter().map(|b| &b.kind).collect();
        assert_eq!(kinds, [b"vmhd", b"dinf"]);
    }
}
