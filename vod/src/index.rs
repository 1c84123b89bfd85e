//! [`MediaIndex`]: what a stored file holds and how it is segmented, in a
//! few hundred bytes per segment and track.

use std::time::Duration;

use bytes::Bytes;
use vela_media::{CodecConfig, MediaKind, Track};

use crate::moov::{parse_moov, EditShift, ParsedTrack, TableLocs};
use crate::plan::{plan_follower, plan_reference, SegEntry, TrackPlan};
use crate::scan::{find_moov, MoovBytes};
use crate::tables::uniform_size;
use crate::{fragment, ReadAt, VodError};

/// How an asset is indexed.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexOptions {
    /// Target segment duration (default 4 s).
    pub segment_target: Duration,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            segment_target: Duration::from_secs(4),
        }
    }
}

/// A playable track of the asset.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackInfo {
    /// The track as the packager takes it; `id` is the source's `tkhd` id,
    /// `bitrate` the average over the asset.
    pub track: Track,
    /// ISO 639-2/T code from `mdhd` ("und" when unset).
    pub language: String,
    /// BCP 47 tag from `elng`, when the file has one.
    pub extended_language: Option<String>,
    /// The edit-list shift applied to the fragments' times.
    pub edit: EditShift,
    pub sample_count: u32,
    /// Sum of the sample durations, in the track's timescale.
    pub duration: u64,
    /// Largest segment bitrate (bits/s), for HLS `BANDWIDTH`.
    pub peak_bitrate: u32,
    pub(crate) language_code: u16,
}

impl TrackInfo {
    pub fn id(&self) -> u32 {
        self.track.id
    }
    pub fn kind(&self) -> MediaKind {
        self.track.kind()
    }
    pub fn timescale(&self) -> u32 {
        self.track.timescale
    }
}

/// One segment of one track. Times are in the track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// 0-based; the fragment's `mfhd` sequence number is `number + 1`.
    pub number: u32,
    /// Decode time of the first sample (the fragment's `tfdt`).
    pub start: u64,
    pub duration: u64,
    /// Earliest presentation time of its samples (may be below `start` by
    /// the edit-list shift, e.g. AAC priming).
    pub presentation_start: i64,
    pub first_sample: u32,
    pub sample_count: u32,
    /// Sample payload bytes (the `mdat` body).
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct TrackIndex {
    pub info: TrackInfo,
    pub locs: TableLocs,
    pub uniform_size: u32,
    pub plan: TrackPlan,
}

impl TrackIndex {
    pub fn segment(&self, n: u32) -> Option<SegmentInfo> {
        let seg: &SegEntry = self.plan.segs.get(n as usize)?;
        let add = self.info.edit.dts_add();
        let next = self
            .plan
            .segs
            .get(n as usize + 1)
            .map(|s| s.pos)
            .unwrap_or(self.plan.end);
        Some(SegmentInfo {
            number: n,
            start: seg.pos.dts + add,
            duration: next.dts - seg.pos.dts,
            presentation_start: seg.pts,
            first_sample: seg.pos.sample,
            sample_count: next.sample - seg.pos.sample,
            bytes: seg.bytes,
        })
    }
}

/// The index of a stored MP4/MOV asset.
#[derive(Debug, Clone)]
pub struct MediaIndex {
    file_len: u64,
    segment_target: Duration,
    segment_count: u32,
    tracks: Vec<TrackIndex>,
}

impl MediaIndex {
    /// Reads the box headers and the `moov` of `src` and plans its segments.
    pub fn open<R: ReadAt + ?Sized>(src: &R, opts: &IndexOptions) -> Result<Self, VodError> {
        let moov = find_moov(src)?;
        Self::from_moov(&moov, opts)
    }

    /// Indexes a `moov` already read (sans-IO).
    pub(crate) fn from_moov(moov: &MoovBytes, opts: &IndexOptions) -> Result<Self, VodError> {
        let parsed = parse_moov(moov)?;
        let mut tracks: Vec<ParsedTrack> = parsed
            .tracks
            .into_iter()
            .filter(|t| {
                let empty = t.tables.sizes.count() == 0;
                if empty {
                    tracing::info!(track = t.id, "skipping a track without samples");
                }
                !empty
            })
            .collect();
        if tracks.is_empty() {
            return Err(parsed.unsupported.unwrap_or(VodError::NoPlayableTrack));
        }
        // Video first (the reference is the first video track), then audio,
        // each in file order.
        tracks.sort_by_key(|t| t.kind());
        let target = opts.segment_target.as_secs_f64().max(0.1);
        let (reference, cuts) = plan_reference(&tracks[0], moov.file_len, target)?;
        let mut plans = vec![reference];
        for t in &tracks[1..] {
            plans.push(plan_follower(t, moov.file_len, &cuts)?);
        }
        let segment_count = cuts.len() as u32 + 1;
        let tracks = tracks
            .into_iter()
            .zip(plans)
            .map(|(t, mut plan)| {
                plan.segs.shrink_to_fit();
                finish_track(t, plan)
            })
            .collect();
        Ok(MediaIndex {
            file_len: moov.file_len,
            segment_target: opts.segment_target,
            segment_count,
            tracks,
        })
    }

    /// Playable tracks: video first, then audio, each in file order.
    pub fn tracks(&self) -> impl Iterator<Item = &TrackInfo> {
        self.tracks.iter().map(|t| &t.info)
    }

    pub fn track(&self, track_id: u32) -> Option<&TrackInfo> {
        self.tracks().find(|t| t.id() == track_id)
    }

    pub(crate) fn track_index(&self, track_id: u32) -> Result<&TrackIndex, VodError> {
        self.tracks
            .iter()
            .find(|t| t.info.id() == track_id)
            .ok_or(VodError::UnknownTrack(track_id))
    }

    /// Number of segments; the same for every track.
    pub fn segment_count(&self) -> u32 {
        self.segment_count
    }

    pub fn segment_target(&self) -> Duration {
        self.segment_target
    }

    /// Size of the indexed file (a changed size means a changed file).
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The longest track's duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.tracks
            .iter()
            .map(|t| t.info.duration as f64 / f64::from(t.info.timescale()))
            .fold(0.0, f64::max)
    }

    /// One segment of a track.
    pub fn segment(&self, track_id: u32, number: u32) -> Result<SegmentInfo, VodError> {
        self.track_index(track_id)?
            .segment(number)
            .ok_or(VodError::UnknownSegment {
                track: track_id,
                segment: number,
                count: self.segment_count,
            })
    }

    /// Every segment of a track, in order.
    pub fn segments(&self, track_id: u32) -> Result<Vec<SegmentInfo>, VodError> {
        let t = self.track_index(track_id)?;
        Ok((0..self.segment_count)
            .filter_map(|n| t.segment(n))
            .collect())
    }

    /// The CMAF init segment of a track.
    pub fn init(&self, track_id: u32) -> Result<Bytes, VodError> {
        Ok(fragment::init(&self.track_index(track_id)?.info))
    }

    /// Builds one `moof`+`mdat` from the source's samples (sequence number
    /// `number + 1`, `tfdt` the segment's first decode time).
    pub fn fragment<R: ReadAt + ?Sized>(
        &self,
        src: &R,
        track_id: u32,
        number: u32,
    ) -> Result<Bytes, VodError> {
        fragment::build(src, self.track_index(track_id)?, number, self.file_len)
    }

    /// Bytes this index holds on the heap, plus the struct itself.
    pub fn heap_size(&self) -> usize {
        let mut n = std::mem::size_of::<Self>()
            + self.tracks.capacity() * std::mem::size_of::<TrackIndex>();
        for t in &self.tracks {
            n += t.plan.segs.capacity() * std::mem::size_of::<SegEntry>();
            n += t.info.language.capacity();
            n += t
                .info
                .extended_language
                .as_ref()
                .map_or(0, |s| s.capacity());
            n += match &t.info.track.config {
                CodecConfig::Video { record, .. } => record.len(),
                CodecConfig::Audio {
                    specific_config, ..
                } => specific_config.len(),
            };
        }
        n
    }
}

fn finish_track(t: ParsedTrack, plan: TrackPlan) -> TrackIndex {
    let ts = u64::from(t.timescale);
    let duration = plan.end_dts;
    let secs = duration as f64 / ts as f64;
    let bitrate =
        (secs > 0.0).then(|| (plan.bytes as f64 * 8.0 / secs).min(u32::MAX as f64) as u32);
    let mut config = t.config;
    if let CodecConfig::Video { frame_rate, .. } = &mut config {
        *frame_rate = (secs > 0.0).then(|| f64::from(plan.samples) / secs);
    }
    let mut peak = 0u32;
    for (i, seg) in plan.segs.iter().enumerate() {
        let next = plan
            .segs
            .get(i + 1)
            .map(|s| s.pos.dts)
            .unwrap_or(plan.end_dts);
        let d = next.saturating_sub(seg.pos.dts);
        if d > 0 {
            let rate = seg.bytes as f64 * 8.0 * ts as f64 / d as f64;
            peak = peak.max(rate.min(u32::MAX as f64) as u32);
        }
    }
    TrackIndex {
        info: TrackInfo {
            track: Track {
                id: t.id,
                timescale: t.timescale,
                config,
                bitrate,
            },
            language: t.language,
            extended_language: t.extended_language,
            edit: t.edit,
            sample_count: plan.samples,
            duration,
            peak_bitrate: peak,
            language_code: t.language_code,
        },
        locs: t.locs,
        uniform_size: uniform_size(&t.tables.sizes),
        plan,
    }
}
