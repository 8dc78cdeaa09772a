//! Reads the index of an MPEG transport stream. It lists the elementary
//! streams that the PAT and PMTs declare and, for every PES packet, its PTS
//! and DTS as written, its payload size, its byte offset and whether it
//! starts at a random access point.
//!
//! Every TS packet header has to be read, so the file is read in large
//! blocks and only packet headers, adaptation field flags, PSI sections and
//! PES headers are parsed; payload bytes are counted, never copied. The
//! 33-bit timestamps are unwrapped per stream and otherwise left alone,
//! because a jump, a backward step or a reset is exactly what the continuity
//! stage must see. The reader is written by hand because `mpeg2ts-reader`
//! hands PES data to callbacks without the file offset of each PES's first
//! packet, which the index needs.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::index::{
    ContainerFormat, ContainerIndex, IndexError, IndexProblem, ProblemLog, Sample, TrackIndex,
    TrackKind,
};

/// Sync byte that starts every transport packet.
const SYNC_BYTE: u8 = 0x47;

/// Length of a transport packet without the 4-byte prefix of 192-byte
/// (M2TS) packets.
const TS_PACKET_BYTES: usize = 188;

/// Packets read per block: 8192 packets is 1.5 MiB, large enough that read
/// calls cost little next to header parsing.
const BLOCK_PACKETS: usize = 8192;

/// Ticks per second of PTS and DTS.
const PES_CLOCK_HZ: u32 = 90_000;

/// PTS and DTS are 33-bit counters that wrap about every 26.5 hours.
const TIMESTAMP_MODULUS: i64 = 1 << 33;

/// PID of the program association table.
const PAT_PID: u16 = 0x0000;

/// PID of null (stuffing) packets.
const NULL_PID: u16 = 0x1fff;

/// Number of PIDs (13 bits).
const PID_COUNT: usize = 0x2000;

/// Longest PAT or PMT section: section_length is at most 1021 (ISO/IEC
/// 13818-1 §2.4.4), plus the 3 bytes before it.
const MAX_SECTION_BYTES: usize = 1024;

/// Longest PES header: 9 fixed bytes plus up to 255 header data bytes.
const MAX_PES_HEADER_BYTES: usize = 9 + 255;

/// Most PES packets indexed per file, the same cap as for MP4: 2^24 is 24
/// hours of 60 fps video with audio twice over.
const MAX_SAMPLES_PER_FILE: usize = 1 << 24;

/// Layout of 188- or 192-byte packets in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PacketLayout {
    /// 188, or 192 for M2TS files with a 4-byte timestamp before each packet.
    pub(crate) packet_size: usize,
    /// Position of the sync byte within each packet record (0 or 4).
    pub(crate) sync_offset: usize,
    /// File offset of the first whole packet record.
    pub(crate) first_packet: u64,
}

/// Finds the packet layout from the first bytes of a file: a 0x47 sync byte
/// every 188 (or 192) bytes for `required` packets, starting within the
/// first packet so that a file cut mid-packet is still recognised.
pub(crate) fn detect_packet_layout(head: &[u8], required: usize) -> Option<PacketLayout> {
    for (packet_size, sync_offset) in [(TS_PACKET_BYTES, 0), (192, 4)] {
        for start in 0..packet_size {
            let syncs = (0..required)
                .map(|k| start + sync_offset + k * packet_size)
                .take_while(|&at| at < head.len())
                .collect::<Vec<_>>();
            // A short file must still show two syncs at the packet stride.
            let enough = syncs.len() == required || (syncs.len() >= 2 && start == 0);
            if enough && syncs.iter().all(|&at| head[at] == SYNC_BYTE) {
                return Some(PacketLayout {
                    packet_size,
                    sync_offset,
                    first_packet: start as u64,
                });
            }
        }
    }
    None
}

/// Reads the index of the transport stream at `path` from the already
/// opened `file`.
pub(crate) fn read_ts_index(
    path: &Path,
    file: File,
    layout: PacketLayout,
) -> Result<ContainerIndex, IndexError> {
    let io_error = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_size = file.metadata().map_err(io_error)?.len();
    let mut demux = Demux::new();
    let mut log = ProblemLog::default();

    if layout.first_packet > 0 {
        log.malformed(
            format!(
                "文件开头有 {} 字节不属于任何传输流数据包",
                layout.first_packet
            ),
            format!(
                "the file starts with {} bytes that are not part of a transport packet",
                layout.first_packet
            ),
        );
    }
    scan_packets(file, layout, &mut demux, &mut log).map_err(io_error)?;
    let tracks = demux.finish(file_size, &mut log);

    Ok(ContainerIndex {
        format: ContainerFormat::MpegTs,
        brand: None,
        creation_time: None,
        movie_timescale: None,
        is_fragmented: false,
        file_size,
        tracks,
        problems: log.into_problems(),
    })
}

/// Reads the file in blocks and feeds every packet to `demux`, resyncing on
/// lost sync bytes.
fn scan_packets(
    mut file: File,
    layout: PacketLayout,
    demux: &mut Demux,
    log: &mut ProblemLog,
) -> io::Result<()> {
    let packet_size = layout.packet_size;
    let sync_offset = layout.sync_offset;
    file.seek(SeekFrom::Start(layout.first_packet))?;

    let mut buffer = vec![0u8; BLOCK_PACKETS * packet_size];
    let mut filled = 0usize;
    let mut at = 0usize;
    let mut buffer_offset = layout.first_packet;
    let mut end_of_file = false;
    let mut sync_losses = 0u64;
    let mut skipped_bytes = 0u64;
    let mut first_loss_offset = None;

    loop {
        // Keep two packets ahead so that a resync can confirm the next sync.
        if filled - at < 2 * packet_size && !end_of_file {
            buffer.copy_within(at..filled, 0);
            buffer_offset += at as u64;
            filled -= at;
            at = 0;
            while filled < buffer.len() {
                let read = file.read(&mut buffer[filled..])?;
                if read == 0 {
                    end_of_file = true;
                    break;
                }
                filled += read;
            }
        }
        if filled - at < packet_size {
            break;
        }

        let sync_at = at + sync_offset;
        if buffer[sync_at] == SYNC_BYTE {
            let packet = &buffer[sync_at..sync_at + TS_PACKET_BYTES];
            demux.packet(packet, buffer_offset + sync_at as u64);
            at += packet_size;
            continue;
        }

        // Lost sync: take the next 0x47 that is followed by another one a
        // packet later, or that is too close to the end to check.
        sync_losses += 1;
        first_loss_offset.get_or_insert(buffer_offset + sync_at as u64);
        let resume = (at + 1..filled - sync_offset).find(|&candidate| {
            let sync = candidate + sync_offset;
            buffer[sync] == SYNC_BYTE
                && buffer
                    .get(sync + packet_size)
                    .map_or(true, |&next| next == SYNC_BYTE)
        });
        let resume = resume.unwrap_or(filled);
        skipped_bytes += (resume - at) as u64;
        at = resume;
    }

    if sync_losses > 0 {
        let first_loss = first_loss_offset.unwrap_or(0);
        log.malformed(
            format!(
                "传输流数据包失去同步 {sync_losses} 次，共跳过 {skipped_bytes} 字节；第一次失步位于偏移 {first_loss}"
            ),
            format!(
                "lost transport packet sync {sync_losses} times and skipped {skipped_bytes} bytes; the first loss is at offset {first_loss}"
            ),
        );
    }
    let trailing = filled - at;
    if trailing > 0 {
        let offset = buffer_offset + at as u64;
        log.malformed(
            format!(
                "文件在一个传输流数据包中间结束：从偏移 {offset} 起的最后 {trailing} 字节是不完整的数据包，文件被截断"
            ),
            format!(
                "the file ends inside a transport packet: the last {trailing} bytes from offset {offset} are an incomplete packet, so the file is truncated"
            ),
        );
        let sync_at = at + sync_offset;
        if trailing >= sync_offset + 4 && buffer[sync_at] == SYNC_BYTE {
            demux.partial_packet(&buffer[sync_at..filled]);
        }
    }
    Ok(())
}

/// Contents of a PES header, once enough bytes have arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PesHeader {
    NeedMore,
    /// The payload does not start with the 00 00 01 start code.
    NotPes,
    Parsed {
        /// Bytes before the PES payload.
        header_bytes: usize,
        /// PES_packet_length: bytes after this field, 0 when unbounded.
        packet_length: u16,
        pts: Option<u64>,
        dts: Option<u64>,
    },
}

/// Parses a PES header from the bytes received so far.
fn parse_pes_header(bytes: &[u8]) -> PesHeader {
    if bytes.len() < 6 {
        return match bytes {
            [0, 0, 1, ..] | [0, 0] | [0] | [] => PesHeader::NeedMore,
            _ => PesHeader::NotPes,
        };
    }
    if bytes[..3] != [0, 0, 1] {
        return PesHeader::NotPes;
    }
    let stream_id = bytes[3];
    let packet_length = u16::from_be_bytes([bytes[4], bytes[5]]);
    // Stream ids without the optional PES header (ISO/IEC 13818-1 Table 2-21):
    // program_stream_map, padding, private_stream_2, ECM, EMM, DSMCC,
    // H.222.1 type E and program_stream_directory.
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return PesHeader::Parsed {
            header_bytes: 6,
            packet_length,
            pts: None,
            dts: None,
        };
    }
    if bytes.len() < 9 {
        return PesHeader::NeedMore;
    }
    let header_data_length = usize::from(bytes[8]);
    let header_bytes = 9 + header_data_length;
    if bytes.len() < header_bytes {
        return PesHeader::NeedMore;
    }
    if bytes[6] & 0xc0 != 0x80 {
        // Not the MPEG-2 PES header syntax that TS requires.
        return PesHeader::Parsed {
            header_bytes,
            packet_length,
            pts: None,
            dts: None,
        };
    }

    let pts_dts_flags = bytes[7] >> 6;
    let pts = (pts_dts_flags & 0b10 != 0 && header_data_length >= 5)
        .then(|| read_timestamp(&bytes[9..14]));
    let dts =
        (pts_dts_flags == 0b11 && header_data_length >= 10).then(|| read_timestamp(&bytes[14..19]));
    PesHeader::Parsed {
        header_bytes,
        packet_length,
        pts,
        dts,
    }
}

/// Decodes a 33-bit PTS or DTS from its 5-byte field. Marker bits are not
/// checked because they carry no timing.
fn read_timestamp(field: &[u8]) -> u64 {
    (u64::from(field[0] >> 1) & 0x07) << 30
        | u64::from(field[1]) << 22
        | u64::from(field[2] >> 1) << 15
        | u64::from(field[3]) << 7
        | u64::from(field[4] >> 1)
}

/// Returns the signed difference `to - from` between two 33-bit
/// timestamps, in [-2^32, 2^32): the nearest reading across a wrap.
fn wrapped_difference(from: i64, to: i64) -> i64 {
    let half = TIMESTAMP_MODULUS / 2;
    (to - from + half).rem_euclid(TIMESTAMP_MODULUS) - half
}

/// A PES packet being received.
struct PesInProgress {
    /// File offset of the sync byte of its first TS packet.
    offset: u64,
    /// Header bytes collected until the header is complete.
    header_bytes: Vec<u8>,
    header: PesHeader,
    /// All TS payload bytes received, header included.
    received: u64,
    random_access: bool,
}

/// State of one elementary stream (one PID).
struct Stream {
    pid: u16,
    /// stream_type and ES descriptors from the PMT, once listed.
    listed: Option<(u8, Vec<u8>)>,
    /// stream_id of the first PES, for streams no PMT lists.
    stream_id: Option<u8>,
    samples: Vec<Sample>,
    declared: u64,
    current: Option<PesInProgress>,
    /// Last unwrapped DTS, the reference for unwrapping the next one.
    last_dts: Option<i64>,
    any_random_access: bool,
    without_timestamps: u64,
    truncated_at_end: bool,
}

impl Stream {
    fn new(pid: u16) -> Stream {
        Stream {
            pid,
            listed: None,
            stream_id: None,
            samples: Vec::new(),
            declared: 0,
            current: None,
            last_dts: None,
            any_random_access: false,
            without_timestamps: 0,
            truncated_at_end: false,
        }
    }

    /// Closes the PES in progress and records it as a sample when its header
    /// carries a PTS.
    fn finish_pes(&mut self, at_end_of_file: bool, sample_budget: &mut usize) {
        let Some(pes) = self.current.take() else {
            return;
        };
        let PesHeader::Parsed {
            header_bytes,
            packet_length,
            pts,
            dts,
        } = pes.header
        else {
            if at_end_of_file && pes.header == PesHeader::NeedMore {
                self.truncated_at_end = true;
            } else {
                self.without_timestamps += 1;
            }
            return;
        };

        let expected = (packet_length > 0).then(|| 6 + u64::from(packet_length));
        if at_end_of_file && expected.is_some_and(|expected| pes.received < expected) {
            self.truncated_at_end = true;
            return;
        }
        let Some(pts) = pts else {
            self.without_timestamps += 1;
            return;
        };
        if *sample_budget == 0 {
            return;
        }
        *sample_budget -= 1;

        // Unwrap DTS against the previous DTS of this stream, then place PTS
        // next to it, so a B-frame PTS across the wrap stays consistent.
        let raw_dts = dts.unwrap_or(pts) as i64;
        let dts_value = match self.last_dts {
            None => raw_dts,
            Some(previous) => previous.saturating_add(wrapped_difference(
                previous.rem_euclid(TIMESTAMP_MODULUS),
                raw_dts,
            )),
        };
        self.last_dts = Some(dts_value);
        let pts_value = dts_value.saturating_add(wrapped_difference(raw_dts, pts as i64));

        let payload = pes.received.saturating_sub(header_bytes as u64);
        self.samples.push(Sample {
            dts: dts_value,
            pts: pts_value,
            duration: 0,
            size: u32::try_from(payload).unwrap_or(u32::MAX),
            offset: pes.offset,
            is_sync: pes.random_access,
        });
    }
}

/// Collects one PSI section across packets.
#[derive(Default)]
struct SectionAssembler {
    buffer: Vec<u8>,
    active: bool,
}

impl SectionAssembler {
    /// Appends bytes to the section in progress. Returns the completed
    /// section, if any, and how many input bytes were used.
    fn feed(&mut self, bytes: &[u8]) -> (Option<Vec<u8>>, usize) {
        let mut used = 0;
        loop {
            let target = if self.buffer.len() >= 3 {
                3 + (usize::from(self.buffer[1] & 0x0f) << 8 | usize::from(self.buffer[2]))
            } else {
                3
            };
            if target > MAX_SECTION_BYTES {
                self.reset();
                return (None, bytes.len());
            }
            if self.buffer.len() >= 3 && self.buffer.len() == target {
                self.active = false;
                return (Some(std::mem::take(&mut self.buffer)), used);
            }
            if used == bytes.len() {
                return (None, used);
            }
            let take = (target - self.buffer.len()).min(bytes.len() - used);
            self.buffer.extend_from_slice(&bytes[used..used + take]);
            used += take;
        }
    }

    fn reset(&mut self) {
        self.buffer.clear();
        self.active = false;
    }
}

/// CRC-32/MPEG-2 table: polynomial 0x04C11DB7, not reflected.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Returns true when a PSI section, CRC included, checks to zero.
fn section_crc_is_valid(section: &[u8]) -> bool {
    let crc = section.iter().fold(0xffff_ffffu32, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[((crc >> 24) as u8 ^ byte) as usize]
    });
    crc == 0
}

/// Packet-level demultiplexer state.
struct Demux {
    /// Index into `streams` for each PID.
    stream_of_pid: Vec<Option<usize>>,
    is_pmt_pid: Vec<bool>,
    /// Last continuity_counter per PID, or 0xff before the first packet.
    last_counter: Vec<u8>,
    /// True when the last packet repeated its predecessor's counter, so a
    /// second repeat counts as a loss.
    repeated_counter: Vec<bool>,
    continuity_errors: Vec<u64>,
    sections: Vec<(u16, SectionAssembler)>,
    streams: Vec<Stream>,
    /// Elementary PIDs in the order the PMTs first list them.
    listed_order: Vec<u16>,
    saw_pat: bool,
    saw_pmt: bool,
    transport_errors: u64,
    section_errors: u64,
    sample_budget: usize,
}

impl Demux {
    fn new() -> Demux {
        let mut is_pmt_pid = vec![false; PID_COUNT];
        is_pmt_pid[usize::from(PAT_PID)] = false;
        Demux {
            stream_of_pid: vec![None; PID_COUNT],
            is_pmt_pid,
            last_counter: vec![0xff; PID_COUNT],
            repeated_counter: vec![false; PID_COUNT],
            continuity_errors: vec![0; PID_COUNT],
            sections: Vec::new(),
            streams: Vec::new(),
            listed_order: Vec::new(),
            saw_pat: false,
            saw_pmt: false,
            transport_errors: 0,
            section_errors: 0,
            sample_budget: MAX_SAMPLES_PER_FILE,
        }
    }

    /// Handles one 188-byte packet whose sync byte is at `offset`.
    fn packet(&mut self, packet: &[u8], offset: u64) {
        if packet[1] & 0x80 != 0 {
            // transport_error_indicator: the payload cannot be trusted.
            self.transport_errors += 1;
            return;
        }
        let unit_start = packet[1] & 0x40 != 0;
        let pid = u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2]);
        if pid == NULL_PID {
            return;
        }
        let adaptation_control = (packet[3] >> 4) & 0x03;
        let counter = packet[3] & 0x0f;

        let mut payload_start = 4;
        let mut discontinuity = false;
        let mut random_access = false;
        if adaptation_control & 0x02 != 0 {
            let length = usize::from(packet[4]);
            if length > 0 {
                let flags = packet[5];
                discontinuity = flags & 0x80 != 0;
                random_access = flags & 0x40 != 0;
            }
            payload_start = 5 + length;
        }
        let has_payload = adaptation_control & 0x01 != 0 && payload_start < TS_PACKET_BYTES;
        if !has_payload {
            return;
        }

        if self.counter_repeats(pid, counter, discontinuity) {
            return;
        }
        let payload = &packet[payload_start..];

        if pid == PAT_PID || self.is_pmt_pid[usize::from(pid)] {
            self.psi_payload(pid, unit_start, payload);
        } else {
            self.pes_payload(pid, unit_start, payload, offset, random_access);
        }
    }

    /// Checks the continuity_counter of a payload packet, counting skips as
    /// lost packets. Returns true for a first repeat, which ISO/IEC 13818-1
    /// allows as a duplicate packet to be discarded.
    fn counter_repeats(&mut self, pid: u16, counter: u8, discontinuity: bool) -> bool {
        let slot = usize::from(pid);
        let last = self.last_counter[slot];
        self.last_counter[slot] = counter;
        if last == 0xff || discontinuity {
            self.repeated_counter[slot] = false;
            return false;
        }
        if counter == last && !self.repeated_counter[slot] {
            self.repeated_counter[slot] = true;
            return true;
        }
        self.repeated_counter[slot] = false;
        if counter != (last + 1) & 0x0f {
            self.continuity_errors[slot] += 1;
        }
        false
    }

    fn pes_payload(
        &mut self,
        pid: u16,
        unit_start: bool,
        payload: &[u8],
        offset: u64,
        random_access: bool,
    ) {
        let existing = self.stream_of_pid[usize::from(pid)];
        if unit_start {
            if let Some(index) = existing {
                self.streams[index].finish_pes(false, &mut self.sample_budget);
            }
            // Collect PES from any PID that starts one, because packets may
            // arrive before the PMT that lists their PID.
            let is_pes = matches!(payload, [0, 0, 1, ..]);
            let index = match existing {
                Some(index) => index,
                None if is_pes => self.add_stream(pid),
                None => return,
            };
            let stream = &mut self.streams[index];
            stream.declared += 1;
            stream.any_random_access |= random_access;
            let mut pes = PesInProgress {
                offset,
                header_bytes: Vec::new(),
                header: PesHeader::NeedMore,
                received: payload.len() as u64,
                random_access,
            };
            pes.header = parse_pes_header(payload);
            if pes.header == PesHeader::NeedMore {
                pes.header_bytes
                    .extend_from_slice(&payload[..payload.len().min(MAX_PES_HEADER_BYTES)]);
            }
            if stream.stream_id.is_none() && payload.len() > 3 {
                stream.stream_id = Some(payload[3]);
            }
            stream.current = Some(pes);
            return;
        }

        let Some(index) = existing else {
            return;
        };
        let Some(pes) = self.streams[index].current.as_mut() else {
            return;
        };
        pes.received += payload.len() as u64;
        if pes.header == PesHeader::NeedMore {
            let room = MAX_PES_HEADER_BYTES - pes.header_bytes.len();
            pes.header_bytes
                .extend_from_slice(&payload[..payload.len().min(room)]);
            pes.header = parse_pes_header(&pes.header_bytes);
            if pes.header != PesHeader::NeedMore {
                pes.header_bytes = Vec::new();
            }
        }
    }

    fn add_stream(&mut self, pid: u16) -> usize {
        let index = self.streams.len();
        self.streams.push(Stream::new(pid));
        self.stream_of_pid[usize::from(pid)] = Some(index);
        index
    }

    fn psi_payload(&mut self, pid: u16, unit_start: bool, payload: &[u8]) {
        let position = match self.sections.iter().position(|(p, _)| *p == pid) {
            Some(position) => position,
            None => {
                self.sections.push((pid, SectionAssembler::default()));
                self.sections.len() - 1
            }
        };
        let mut completed = Vec::new();
        {
            let assembler = &mut self.sections[position].1;
            if unit_start {
                let pointer = usize::from(payload[0]);
                let rest = &payload[1..];
                if pointer > rest.len() {
                    assembler.reset();
                    self.section_errors += 1;
                    return;
                }
                if assembler.active {
                    if let (Some(section), _) = assembler.feed(&rest[..pointer]) {
                        completed.push(section);
                    }
                }
                assembler.reset();
                let mut data = &rest[pointer..];
                // Several sections may follow one another in a packet until
                // 0xff stuffing.
                while data.first().is_some_and(|&table_id| table_id != 0xff) {
                    assembler.active = true;
                    let (section, used) = assembler.feed(data);
                    data = &data[used..];
                    match section {
                        Some(section) => completed.push(section),
                        None => break,
                    }
                }
            } else if assembler.active {
                if let (Some(section), _) = assembler.feed(payload) {
                    completed.push(section);
                }
            }
        }
        for section in completed {
            self.section(&section);
        }
    }

    /// Handles a complete PSI section.
    fn section(&mut self, section: &[u8]) {
        // table_id, lengths, ids, version, section numbers and the CRC.
        if section.len() < 12 || !section_crc_is_valid(section) {
            self.section_errors += 1;
            return;
        }
        let current_next = section[5] & 0x01 != 0;
        if !current_next {
            return;
        }
        let body = &section[8..section.len() - 4];
        match section[0] {
            0x00 => {
                self.saw_pat = true;
                for entry in body.chunks_exact(4) {
                    let program_number = u16::from_be_bytes([entry[0], entry[1]]);
                    let pid = u16::from(entry[2] & 0x1f) << 8 | u16::from(entry[3]);
                    // Program 0 points at the network information table.
                    if program_number != 0 && pid != PAT_PID {
                        self.is_pmt_pid[usize::from(pid)] = true;
                    }
                }
            }
            0x02 => {
                self.saw_pmt = true;
                self.program_map(body);
            }
            _ => {}
        }
    }

    /// Records the elementary streams of a PMT body (after the 8-byte
    /// section header, before the CRC).
    fn program_map(&mut self, body: &[u8]) {
        if body.len() < 4 {
            self.section_errors += 1;
            return;
        }
        let program_info_length = usize::from(body[2] & 0x0f) << 8 | usize::from(body[3]);
        let mut entries = body.get(4 + program_info_length..).unwrap_or_default();
        while entries.len() >= 5 {
            let stream_type = entries[0];
            let pid = u16::from(entries[1] & 0x1f) << 8 | u16::from(entries[2]);
            let info_length = usize::from(entries[3] & 0x0f) << 8 | usize::from(entries[4]);
            let descriptors = entries.get(5..5 + info_length).unwrap_or_default();
            entries = entries.get(5 + info_length..).unwrap_or_default();

            if pid == PAT_PID || pid == NULL_PID || self.is_pmt_pid[usize::from(pid)] {
                continue;
            }
            let index = match self.stream_of_pid[usize::from(pid)] {
                Some(index) => index,
                None => self.add_stream(pid),
            };
            let stream = &mut self.streams[index];
            if stream.listed.is_none() {
                stream.listed = Some((stream_type, descriptors.to_vec()));
                self.listed_order.push(pid);
            }
        }
    }

    /// Handles the incomplete packet at the end of a truncated file: the
    /// PES it belongs to, or starts, never completes.
    fn partial_packet(&mut self, packet: &[u8]) {
        let unit_start = packet[1] & 0x40 != 0;
        let pid = u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2]);
        let Some(index) = self.stream_of_pid[usize::from(pid)] else {
            return;
        };
        let stream = &mut self.streams[index];
        if unit_start {
            stream.finish_pes(false, &mut self.sample_budget);
            stream.declared += 1;
        } else if stream.current.is_none() {
            return;
        }
        stream.current = None;
        stream.truncated_at_end = true;
    }

    /// Closes every stream and returns the tracks in PMT order, or, when no
    /// PMT was found, every PID that carried PES packets.
    fn finish(mut self, file_size: u64, log: &mut ProblemLog) -> Vec<TrackIndex> {
        for stream in &mut self.streams {
            stream.finish_pes(true, &mut self.sample_budget);
        }

        if self.transport_errors > 0 {
            log.malformed(
                format!(
                    "{} 个传输流数据包带有 transport_error_indicator 标志（在传输或存储中损坏），已忽略",
                    self.transport_errors
                ),
                format!(
                    "{} transport packets carry the transport_error_indicator (damaged in transmission or storage) and were ignored",
                    self.transport_errors
                ),
            );
        }
        if self.section_errors > 0 {
            log.malformed(
                format!(
                    "{} 个 PAT/PMT 段已损坏（CRC 或长度错误），已忽略",
                    self.section_errors
                ),
                format!(
                    "{} PAT/PMT sections were damaged (bad CRC or length) and were ignored",
                    self.section_errors
                ),
            );
        }
        if self.sample_budget == 0 {
            log.malformed(
                format!("文件包含超过 {MAX_SAMPLES_PER_FILE} 个 PES 数据包，其余数据包未列出"),
                format!("the file contains more than {MAX_SAMPLES_PER_FILE} PES packets; the rest are not listed"),
            );
        }

        let order: Vec<u16> = if self.saw_pmt {
            self.listed_order.clone()
        } else {
            if self.saw_pat {
                log.malformed(
                    "找到了 PAT，但没有有效的 PMT，因此流类型未知；轨道类型按 PES stream_id 推测",
                    "the PAT was found but no valid PMT, so stream types are unknown; tracks are guessed from PES stream ids",
                );
            } else {
                log.malformed(
                    "没有找到有效的 PAT 或 PMT，因此流类型未知；轨道类型按 PES stream_id 推测",
                    "no valid PAT or PMT was found, so stream types are unknown; tracks are guessed from PES stream ids",
                );
            }
            self.streams.iter().map(|s| s.pid).collect()
        };
        if self.saw_pmt {
            for stream in self
                .streams
                .iter()
                .filter(|s| s.listed.is_none() && s.declared > 0)
            {
                log.malformed(
                    format!(
                        "PID 0x{:04x} 承载了 {} 个 PES 数据包，但没有任何 PMT 列出它；未建立索引",
                        stream.pid, stream.declared
                    ),
                    format!(
                        "PID 0x{:04x} carries {} PES packets but no PMT lists it; it is not indexed",
                        stream.pid, stream.declared
                    ),
                );
            }
        }

        let mut tracks = Vec::with_capacity(order.len());
        for pid in order {
            let Some(stream_index) = self.stream_of_pid[usize::from(pid)] else {
                continue;
            };
            let stream = std::mem::replace(&mut self.streams[stream_index], Stream::new(pid));
            let index = tracks.len();
            let track = self.track_from_stream(stream, index, file_size, log);
            tracks.push(track);
        }
        tracks
    }

    fn track_from_stream(
        &self,
        mut stream: Stream,
        index: usize,
        file_size: u64,
        log: &mut ProblemLog,
    ) -> TrackIndex {
        let (handler_type, codec, kind) = match &stream.listed {
            Some((stream_type, descriptors)) => {
                let (codec, mut kind) = codec_of_stream_type(*stream_type, descriptors);
                // Private data without a telling descriptor (AAC in some
                // M2TS files) still shows its kind in the PES stream_id.
                if kind == TrackKind::Other {
                    kind = stream.stream_id.map_or(TrackKind::Other, kind_of_stream_id);
                }
                (format!("0x{stream_type:02x}"), codec.to_string(), kind)
            }
            None => {
                let kind = stream.stream_id.map_or(TrackKind::Other, kind_of_stream_id);
                (String::new(), "unknown".to_string(), kind)
            }
        };

        // NOTE: a stream that never sets random_access_indicator carries no
        // sync information. Its samples are then all marked sync, as MP4
        // does without stss.
        if !stream.any_random_access {
            for sample in &mut stream.samples {
                sample.is_sync = true;
            }
        }

        let continuity_errors = self.continuity_errors[usize::from(stream.pid)];
        if continuity_errors > 0 {
            log.malformed(
                format!(
                    "轨道 {index}（PID 0x{:04x}）的连续性计数器跳号 {continuity_errors} 次：有传输流数据包丢失",
                    stream.pid
                ),
                format!(
                    "track {index} (PID 0x{:04x}) skipped its continuity counter {continuity_errors} times: transport packets were lost",
                    stream.pid
                ),
            );
        }
        if stream.without_timestamps > 0 {
            log.malformed(
                format!(
                    "轨道 {index}（PID 0x{:04x}）有 {} 个 PES 数据包没有 PTS，未作为样本列出",
                    stream.pid, stream.without_timestamps
                ),
                format!(
                    "track {index} (PID 0x{:04x}) has {} PES packets without a PTS; they are not listed as samples",
                    stream.pid, stream.without_timestamps
                ),
            );
        }
        if stream.truncated_at_end {
            log.push(IndexProblem::Truncated {
                track: index,
                declared_samples: stream.declared,
                present_samples: stream.samples.len() as u64,
                data_end: file_size,
            });
        }

        TrackIndex {
            index,
            id: u32::from(stream.pid),
            kind,
            handler_type,
            handler_name: None,
            codec,
            timescale: PES_CLOCK_HZ,
            width: None,
            height: None,
            rotation: 0,
            declared_duration: None,
            edits: Vec::new(),
            samples: stream.samples,
            declared_samples: stream.declared,
            continuity_errors,
        }
    }
}

/// Guesses a track kind from a PES stream_id (ISO/IEC 13818-1 Table 2-22).
fn kind_of_stream_id(stream_id: u8) -> TrackKind {
    match stream_id {
        0xe0..=0xef => TrackKind::Video,
        0xc0..=0xdf => TrackKind::Audio,
        _ => TrackKind::Other,
    }
}

/// Maps a PMT stream_type, and for private data its descriptors, to a codec
/// name as FFmpeg spells it and a track kind.
fn codec_of_stream_type(stream_type: u8, descriptors: &[u8]) -> (&'static str, TrackKind) {
    use TrackKind::{Audio, Metadata, Other, Subtitle, Video};
    match stream_type {
        0x01 => ("mpeg1video", Video),
        0x02 => ("mpeg2video", Video),
        // FFmpeg names MPEG-1 and MPEG-2 audio streams mp3 until it parses
        // the frames.
        0x03 | 0x04 => ("mp3", Audio),
        0x0f => ("aac", Audio),
        0x10 => ("mpeg4", Video),
        0x11 => ("aac_latm", Audio),
        0x15 => (metadata_codec(descriptors), Metadata),
        0x1b => ("h264", Video),
        0x1c => ("aac", Audio),
        0x24 => ("h265", Video),
        0x33 => ("vvc", Video),
        0x42 => ("cavs", Video),
        0x80 => ("pcm_bluray", Audio),
        0x81 => ("ac3", Audio),
        0x82 | 0x85 => ("dts", Audio),
        0x83 => ("truehd", Audio),
        0x84 | 0x87 => ("eac3", Audio),
        0x90 => ("hdmv_pgs_subtitle", Subtitle),
        0x92 => ("hdmv_text_subtitle", Subtitle),
        0xd1 => ("dirac", Video),
        0xea => ("vc1", Video),
        0x06 => private_data_codec(descriptors),
        _ => ("unknown", Other),
    }
}

/// Names metadata carried in PES (stream_type 0x15) by the format identifier
/// in its descriptors.
fn metadata_codec(descriptors: &[u8]) -> &'static str {
    if contains(descriptors, b"KLVA") {
        "klv"
    } else if contains(descriptors, b"ID3 ") {
        "timed_id3"
    } else {
        "metadata"
    }
}

/// Names private PES data (stream_type 0x06) by its descriptors.
fn private_data_codec(descriptors: &[u8]) -> (&'static str, TrackKind) {
    let mut rest = descriptors;
    while rest.len() >= 2 {
        let tag = rest[0];
        let length = usize::from(rest[1]);
        let body = rest.get(2..2 + length).unwrap_or_default();
        rest = rest.get(2 + length..).unwrap_or_default();
        let found = match tag {
            0x05 => match body.get(..4) {
                Some(b"KLVA") => Some(("klv", TrackKind::Metadata)),
                Some(b"Opus") => Some(("opus", TrackKind::Audio)),
                Some(b"AC-3") => Some(("ac3", TrackKind::Audio)),
                Some(b"EAC3") => Some(("eac3", TrackKind::Audio)),
                Some(b"HEVC") => Some(("h265", TrackKind::Video)),
                Some(b"ID3 ") => Some(("timed_id3", TrackKind::Metadata)),
                _ => None,
            },
            0x56 => Some(("dvb_teletext", TrackKind::Subtitle)),
            0x59 => Some(("dvb_subtitle", TrackKind::Subtitle)),
            0x6a => Some(("ac3", TrackKind::Audio)),
            0x7a => Some(("eac3", TrackKind::Audio)),
            0x7b => Some(("dts", TrackKind::Audio)),
            _ => None,
        };
        if let Some(found) = found {
            return found;
        }
    }
    ("private_data", TrackKind::Other)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::index::read_index;
    use std::path::PathBuf;

    fn case(name: &str) -> ContainerIndex {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/cases")
            .join(name);
        read_index(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Returns the largest forward (or backward) step between consecutive
    /// decode times in seconds, with the media time played before it: from
    /// the first sample to the end of the sample before the step.
    fn largest_step(track: &TrackIndex, backwards: bool) -> (f64, f64) {
        let first = track.samples[0].dts;
        let frame = track.nominal_step().unwrap();
        let seconds = |ticks: i64| ticks as f64 / f64::from(track.timescale);
        track
            .samples
            .windows(2)
            .map(|w| {
                (
                    seconds(w[1].dts - w[0].dts),
                    seconds(w[0].dts - first) + frame,
                )
            })
            .fold((0.0, 0.0), |best, step| {
                let better = if backwards {
                    step.0 < best.0
                } else {
                    step.0 > best.0
                };
                if better {
                    step
                } else {
                    best
                }
            })
    }

    fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{what}: got {actual}, expected {expected} ± {tolerance}"
        );
    }

    /// Tolerance for where a step sits. The muxer cut audio at AAC frame
    /// boundaries (21.3 ms), so its step lands up to 51 ms before the video
    /// step at 5.0 s.
    const STEP_POSITION_TOLERANCE: f64 = 0.06;

    #[test]
    fn ts_tracks_come_from_pmt() {
        let index = case("ts-gap-10s.ts");
        assert_eq!(index.tracks.len(), 2);

        let video = &index.tracks[0];
        assert_eq!(
            (video.id, video.codec.as_str(), video.kind),
            (0x41, "h264", TrackKind::Video)
        );
        assert_eq!(video.handler_type, "0x1b");
        assert_eq!(video.timescale, 90_000);
        assert_eq!(video.samples.len(), 300);
        assert_eq!(video.declared_samples, 300);

        let audio = &index.tracks[1];
        assert_eq!(
            (audio.id, audio.codec.as_str(), audio.kind),
            (0x42, "aac", TrackKind::Audio)
        );
        assert_eq!(audio.samples.len(), 470);
        assert!(index.problems.is_empty(), "{:?}", index.problems);
    }

    #[test]
    fn ts_gap_is_visible_in_raw_pts() {
        let index = case("ts-gap-10s.ts");
        for track in &index.tracks {
            let (step, at) = largest_step(track, false);
            assert_close(step, 10.033, 0.025, "forward step");
            assert_close(at, 5.0, STEP_POSITION_TOLERANCE, "step position");
            let forward_jumps = track
                .samples
                .windows(2)
                .filter(|w| (w[1].dts - w[0].dts) as f64 / 90_000.0 > 1.0)
                .count();
            assert_eq!(forward_jumps, 1, "track {}", track.index);
        }
    }

    #[test]
    fn ts_backward_step_stays_visible() {
        let index = case("ts-backwards-2s.ts");
        for track in &index.tracks {
            let (step, at) = largest_step(track, true);
            assert_close(step, -1.97, 0.025, "backward step");
            assert_close(at, 5.0, STEP_POSITION_TOLERANCE, "step position");
        }
        let video = &index.tracks[0];
        let step_index = video
            .samples
            .windows(2)
            .position(|w| w[1].dts < w[0].dts)
            .unwrap();
        let before = video.samples[step_index].dts as f64 / 90_000.0;
        let after = video.samples[step_index + 1].dts as f64 / 90_000.0;
        assert_close(before, 3604.90, 0.005, "raw DTS before the step");
        assert_close(after, 3602.93, 0.005, "raw DTS after the step");
    }

    #[test]
    fn ts_reset_restarts_timestamps() {
        let index = case("ts-reset.ts");
        for track in &index.tracks {
            let (step, at) = largest_step(track, true);
            assert_close(step, -4.97, 0.025, "reset step");
            assert_close(at, 5.0, STEP_POSITION_TOLERANCE, "reset position");
        }
    }

    #[test]
    fn ts_samples_point_at_pes_packets() {
        let index = case("ts-gap-10s.ts");
        let video = &index.tracks[0];
        for sample in &video.samples {
            assert_eq!(sample.offset % 188, 0);
            assert!(sample.size > 0);
            assert!(sample.pts >= sample.dts);
        }
        assert!(video.samples[0].is_sync);
        assert!(
            video.samples.iter().any(|s| !s.is_sync),
            "only keyframes carry random_access_indicator"
        );
    }

    #[test]
    fn ts_wrap_is_unwrapped_forward() {
        let near_end = TIMESTAMP_MODULUS - 1500;
        assert_eq!(wrapped_difference(near_end, 1500), 3000);
        assert_eq!(wrapped_difference(1500, near_end), -3000);
        // A reset of a few seconds stays a backward step.
        assert_eq!(wrapped_difference(900_000, 450_000), -450_000);
    }

    /// Rewrites every PTS and DTS of a 188-byte-packet stream by adding
    /// `shift` modulo 2^33.
    fn shift_timestamps(data: &mut [u8], shift: i64) {
        let write = |field: &mut [u8], value: i64| {
            let value = value.rem_euclid(TIMESTAMP_MODULUS) as u64;
            field[0] = (field[0] & 0xf0) | ((value >> 29) as u8 & 0x0e) | 1;
            field[1] = (value >> 22) as u8;
            field[2] = ((value >> 14) as u8 & 0xfe) | 1;
            field[3] = (value >> 7) as u8;
            field[4] = ((value << 1) as u8 & 0xfe) | 1;
        };
        for packet in data.chunks_exact_mut(TS_PACKET_BYTES) {
            if packet[1] & 0x40 == 0 {
                continue;
            }
            let start = if packet[3] & 0x20 != 0 {
                5 + usize::from(packet[4])
            } else {
                4
            };
            let pes = &mut packet[start..];
            if pes.len() < 19 || pes[..3] != [0, 0, 1] {
                continue;
            }
            let flags = pes[7] >> 6;
            if flags & 0b10 != 0 {
                let pts = read_timestamp(&pes[9..14]) as i64;
                write(&mut pes[9..14], pts + shift);
            }
            if flags == 0b11 {
                let dts = read_timestamp(&pes[14..19]) as i64;
                write(&mut pes[14..19], dts + shift);
            }
        }
    }

    #[test]
    fn ts_33_bit_wrap_stays_continuous() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cases/ts-gap-10s.ts");
        let mut data = std::fs::read(path).unwrap();
        // The stream starts at 3600 s. The shift makes the counter wrap 2 s
        // in.
        let shift = TIMESTAMP_MODULUS - 3600 * 90_000 - 2 * 90_000;
        shift_timestamps(&mut data, shift);
        let dir = tempfile::tempdir().unwrap();
        let shifted = dir.path().join("wrap.ts");
        std::fs::write(&shifted, &data).unwrap();

        let index = read_index(&shifted).unwrap();
        for track in &index.tracks {
            assert!(track.samples[0].dts > TIMESTAMP_MODULUS - 3 * 90_000);
            assert!(
                track.samples.last().unwrap().dts > TIMESTAMP_MODULUS,
                "unwrapped past 2^33"
            );
            let (forward, at) = largest_step(track, false);
            assert_close(forward, 10.033, 0.025, "gap after the wrap");
            assert_close(at, 5.0, STEP_POSITION_TOLERANCE, "gap position");
            let backward = track.samples.windows(2).any(|w| w[1].dts < w[0].dts);
            assert!(!backward, "the wrap must not look like a backward step");
        }
    }

    #[test]
    fn ts_timestamp_field_decodes_33_bits() {
        // '0010' prefix, marker bits set, value 2^33 - 1.
        let field = [0x2f, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(read_timestamp(&field), (1 << 33) - 1);
    }

    #[test]
    fn ts_cut_mid_packet_reports_truncation() {
        let source = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cases/ts-reset.ts"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.ts");
        std::fs::write(&path, &source[..188 * 1000 + 100]).unwrap();

        let index = read_index(&path).unwrap();
        let malformed = index.problems.iter().any(|p| {
            matches!(p, IndexProblem::Malformed { reason } if reason.en.contains("ends inside a transport packet"))
        });
        assert!(malformed, "{:?}", index.problems);
        assert!(index
            .tracks
            .iter()
            .all(|t| t.samples.len() as u64 <= t.declared_samples));
    }

    #[test]
    fn ts_lost_packets_count_as_continuity_errors() {
        let mut source = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cases/ts-reset.ts"),
        )
        .unwrap();
        // Drop packets 500 and 501, wherever their PIDs are.
        source.drain(188 * 500..188 * 502);
        // Corrupt a sync byte so that the reader has to resync.
        source[188 * 700] = 0x00;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lossy.ts");
        std::fs::write(&path, &source).unwrap();
        let index = read_index(&path).unwrap();

        let errors: u64 = index.tracks.iter().map(|t| t.continuity_errors).sum();
        assert!(errors >= 1, "{:?}", index.problems);
        let resynced = index.problems.iter().any(|p| {
            matches!(p, IndexProblem::Malformed { reason } if reason.en.contains("lost transport packet sync"))
        });
        assert!(resynced, "{:?}", index.problems);
    }

    #[test]
    fn m2ts_192_byte_packets_are_read() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cases/ts-reset.ts");
        let source = std::fs::read(path).unwrap();
        let mut m2ts = Vec::with_capacity(source.len() / 188 * 192);
        for packet in source.chunks_exact(TS_PACKET_BYTES) {
            m2ts.extend_from_slice(&[0x40, 0, 0, 0]);
            m2ts.extend_from_slice(packet);
        }
        let dir = tempfile::tempdir().unwrap();
        let converted = dir.path().join("reset.m2ts");
        std::fs::write(&converted, &m2ts).unwrap();

        let plain = case("ts-reset.ts");
        let index = read_index(&converted).unwrap();
        assert!(index.problems.is_empty(), "{:?}", index.problems);
        assert_eq!(index.tracks.len(), plain.tracks.len());
        for (track, expected) in index.tracks.iter().zip(&plain.tracks) {
            assert_eq!(track.samples.len(), expected.samples.len());
            let first = (track.samples[0], expected.samples[0]);
            assert_eq!(first.0.pts, first.1.pts);
            // The offset is the sync byte's, after the 4-byte prefix.
            assert_eq!(first.0.offset, first.1.offset / 188 * 192 + 4);
        }
    }

    #[test]
    fn pes_header_split_across_packets_is_completed() {
        let header = [0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
        assert_eq!(parse_pes_header(&header[..7]), PesHeader::NeedMore);
        assert_eq!(
            parse_pes_header(&header),
            PesHeader::Parsed {
                header_bytes: 14,
                packet_length: 0,
                pts: Some(0),
                dts: None
            }
        );
        assert_eq!(parse_pes_header(&[0x42, 0, 1, 0, 0, 0]), PesHeader::NotPes);
    }

    #[test]
    fn private_stream_descriptors_name_klv() {
        let registration = [0x05, 4, b'K', b'L', b'V', b'A'];
        assert_eq!(
            codec_of_stream_type(0x06, &registration),
            ("klv", TrackKind::Metadata)
        );
        assert_eq!(
            codec_of_stream_type(0x06, &[]),
            ("private_data", TrackKind::Other)
        );
    }

    #[test]
    fn section_crc_accepts_real_pat() {
        let index_path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cases/ts-gap-10s.ts");
        let source = std::fs::read(index_path).unwrap();
        // The first packet carries the PAT after an adaptation field.
        assert_eq!(source[3] & 0x30, 0x30, "adaptation field and payload");
        let payload_start = 5 + usize::from(source[4]);
        let section_start = payload_start + 1 + usize::from(source[payload_start]);
        let section_length = usize::from(source[section_start + 1] & 0x0f) << 8
            | usize::from(source[section_start + 2]);
        let section = &source[section_start..section_start + 3 + section_length];
        assert!(section_crc_is_valid(section));
        let mut damaged = section.to_vec();
        damaged[9] ^= 0x01;
        assert!(!section_crc_is_valid(&damaged));
    }
}
