"""Records -> a quality score per call: E-model speech, G.1070 video and the call's overall opinion score.

A step after the records (engines never compute it): pure, numpy-vectorised functions of a stream's
worse-direction means (``one_way_delay_s``, ``jitter_s``, ``loss``, ``mean_rate_bps``). A NaN input gives a NaN
score; a value out of range raises ``ValueError``. Formulas, coefficients with their sources and confidence,
assumptions and limits: ``docs/quality.md``.

- Speech: ITU-T G.107 E-model, R = 93.2 - Id - Ie_eff (R0 - Is at the default parameters, A = 0). Id is the
  simplified linear form 0.024 Ta + 0.11 (Ta - 177.3) H(Ta - 177.3) (Cole and Rosenbluth 2001, a fit to G.107's
  delay impairment with echo cancelled), not G.107's full Idd. Ie_eff from G.107 with random loss (BurstR = 1);
  G.711 with packet loss concealment: Ie = 0, Bpl = 25.1 (ITU-T G.113 Appendix I). MOS by G.107 Annex B.
- Video: ITU-T G.1070 video quality estimation function, coefficients for H.264 VGA on a 9.2-inch display as
  published by public implementations (unverified against the Recommendation's text, see ``H264_VGA``).
- The call: the worse of speech and video for a video app (not G.1070's multimedia integration: see the docs),
  speech alone for the rest.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

R_DEFAULT = 93.2            # G.107: R0 - Is with every parameter at its default; advantage factor A = 0
ID_KNEE_MS = 177.3          # simplified Id: the delay beyond which the impairment grows faster
G711_PLC_IE = 0.0           # G.113 Appendix I: G.711 equipment impairment
G711_PLC_BPL = 25.1         # G.113 Appendix I: G.711 with Appendix I PLC, packet-loss robustness (random loss)
BURST_R = 1.0               # random (independent) loss; the records carry no burstiness
# Assumptions (labelled; docs/quality.md): what is added to the network's one-way delay at the ends of a call.
JITTER_BUFFER_FACTOR = 2.0  # assumption: an adaptive jitter buffer holding twice the mean interarrival jitter
FRAME_S = 0.020             # assumption: one 20 ms frame per packet (packetisation delay)
LOOK_AHEAD_S = 0.00375      # assumption: G.711 Appendix I PLC's 30-sample (3.75 ms at 8 kHz) delay; G.711 has none
CODEC_DELAY_S = FRAME_S + LOOK_AHEAD_S
FRAME_RATE_FPS = 25.0       # assumption: the video's frame rate (the records carry none)


class VideoCoefficients(NamedTuple):
    """The G.1070 video quality estimation function's coefficients v1..v12 (Br in kbit/s, Fr in frames/s)."""

    v1: float
    v2: float
    v3: float
    v4: float
    v5: float
    v6: float
    v7: float
    v8: float
    v9: float
    v10: float
    v11: float
    v12: float


# H.264, VGA (640x480), 9.2-inch display: G.1070 (06/2018) Table B.2 column 5 as cited by the public implementation
# OctaveCharrin/rl-mpquic (src/ns3env/g1070.py); the same twelve values in marievixezonaki/SQMF (Video.java, "h264,
# 640x480") and in a second Python implementation ("H.264 Codec, VGA Format and 9.2 Inches display"). Unverified
# against the Recommendation's own text: three implementations agreeing may share one transcription.
H264_VGA = VideoCoefficients(5.517, 0.0129, 3.459, 178.53, 1.02, 1.15, 0.000355, 0.114, 513.77, 0.736, -6.451, 13.684)


class Band(NamedTuple):
    """One opinion band: its lower bounds (MOS, R), what users think of it, and a verdict's word for it."""

    min_mos: float
    min_r: float
    users: str
    verdict: str


# ITU-T G.109 categories of speech transmission quality (R) and G.107's MOS for them, best first. The verdict
# follows G.109: every band down to "poor" is usable (degraded below "high"); below R = 50 is "not recommended".
LABELS = {
    "best": Band(4.3, 90.0, "very satisfied", "good"),
    "high": Band(4.0, 80.0, "satisfied", "good"),
    "medium": Band(3.6, 70.0, "some users dissatisfied", "degraded but usable"),
    "low": Band(3.1, 60.0, "many users dissatisfied", "degraded but usable"),
    "poor": Band(2.6, 50.0, "nearly all users dissatisfied", "degraded but usable"),
    "not_recommended": Band(-np.inf, -np.inf, "not recommended", "unusable"),
}
SCORE_COLUMNS = ("audio_mos", "video_mos", "mos")
# The record columns score reads.
INPUTS = ("traffic", "app", "kind", "one_way_delay_s", "jitter_s", "loss", "mean_rate_bps")


def mouth_to_ear_delay_s(delay_s, jitter_s) -> np.ndarray:
    """Return the mouth-to-ear delay (s): network one-way delay + jitter buffer + codec delay.

    Raises:
        ValueError: If a delay or jitter is negative.
    """
    delay_s = _checked("delay_s", delay_s)
    jitter_s = _checked("jitter_s", jitter_s)
    return delay_s + JITTER_BUFFER_FACTOR * jitter_s + CODEC_DELAY_S


def delay_impairment(ta_ms) -> np.ndarray:
    """Return the simplified E-model delay impairment Id for a mouth-to-ear delay ``ta_ms`` (ms)."""
    ta_ms = np.asarray(ta_ms, dtype=float)
    return 0.024 * ta_ms + 0.11 * np.maximum(ta_ms - ID_KNEE_MS, 0.0)


def effective_equipment_impairment(loss, *, ie: float = G711_PLC_IE, bpl: float = G711_PLC_BPL) -> np.ndarray:
    """Return G.107's Ie_eff for a loss share ``loss`` (0..1), random loss (BurstR = 1).

    Raises:
        ValueError: If a loss is outside [0, 1] or ``bpl`` is not positive.
    """
    if not bpl > 0:
        raise ValueError(f"bpl: {bpl!r} is not positive")
    ppl = 100.0 * _checked("loss", loss, high=1.0)
    return ie + (95.0 - ie) * ppl / (ppl / BURST_R + bpl)


def emodel_r(delay_s, jitter_s, loss, *, ie: float = G711_PLC_IE, bpl: float = G711_PLC_BPL) -> np.ndarray:
    """Return the E-model rating R for one-way network delay (s), mean jitter (s) and loss share (0..1).

    Raises:
        ValueError: If a delay or jitter is negative, or a loss outside [0, 1].
    """
    ta_ms = 1000.0 * mouth_to_ear_delay_s(delay_s, jitter_s)
    return R_DEFAULT - delay_impairment(ta_ms) - effective_equipment_impairment(loss, ie=ie, bpl=bpl)


def mos_from_r(r) -> np.ndarray:
    """Return the MOS (1..4.5) for a rating R by G.107 Annex B."""
    r = np.asarray(r, dtype=float)
    mos = 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    return np.where(r < 0.0, 1.0, np.where(r > 100.0, 4.5, mos))


def video_quality(rate_bps, loss, *, frame_rate_fps: float = FRAME_RATE_FPS,
                  coefficients: VideoCoefficients = H264_VGA) -> np.ndarray:
    """Return G.1070's video quality Vq (MOS) for a bitrate (bit/s), a loss share (0..1) and a frame rate (fps).

    Raises:
        ValueError: If a rate is negative, a loss outside [0, 1], the frame rate not positive, or the coefficients
            make the loss robustness Dpplv non-positive at this frame rate.
    """
    if not frame_rate_fps > 0:
        raise ValueError(f"frame_rate_fps: {frame_rate_fps!r} is not positive")
    br = _checked("rate_bps", rate_bps) / 1000.0
    ppl = 100.0 * _checked("loss", loss, high=1.0)
    dpplv = _loss_robustness(br, frame_rate_fps, coefficients)
    if np.any(dpplv <= 0):
        raise ValueError(f"frame_rate_fps: {frame_rate_fps!r} makes Dpplv non-positive with these coefficients")
    return 1.0 + _coding_quality(br, frame_rate_fps, coefficients) * np.exp(-ppl / dpplv)


def _coding_quality(br: np.ndarray, fr: float, c: VideoCoefficients) -> np.ndarray:
    """Icoding: the quality above 1 that coding at ``br`` kbit/s and ``fr`` frames/s leaves."""
    ofr = c.v1 + c.v2 * br                                # the optimal frame rate at this bitrate
    iofr = c.v3 - c.v3 / (1.0 + (br / c.v4) ** c.v5)      # the best quality at this bitrate
    dfrv = c.v6 + c.v7 * br                               # robustness to a frame rate off the optimum
    return iofr * np.exp(-((np.log(fr) - np.log(ofr)) ** 2) / (2.0 * dfrv ** 2))


def _loss_robustness(br: np.ndarray, fr: float, c: VideoCoefficients) -> np.ndarray:
    """Dpplv: the loss (%) that takes Icoding down by a factor e."""
    return c.v10 + c.v11 * np.exp(-fr / c.v8) + c.v12 * np.exp(-br / c.v9)


def score(records: pd.DataFrame, video_apps: set[str]) -> pd.DataFrame:
    """Return ``audio_mos``, ``video_mos`` and ``mos`` per record, aligned with ``records.index``.

    Every stream gets an audio score; a stream whose app is in ``video_apps`` also a video score, and its ``mos``
    is the worse of the two; other streams' ``mos`` is their audio score. Transfers get NaN throughout.

    Raises:
        ValueError: If a column is missing, a value out of range, or a video app's row an aggregate stream (its
            rate is its users' sum, so there is no per-call bitrate to score).
    """
    missing = [name for name in INPUTS if name not in records.columns]
    if missing:
        raise ValueError(f"records: missing column(s) {missing} (needs {list(INPUTS)})")
    stream = (records["traffic"] == "stream").to_numpy()
    video = stream & records["app"].isin(sorted(video_apps)).to_numpy()
    _refuse_aggregate_video(records, video)
    audio = np.full(len(records), np.nan)
    calls = records[stream]
    audio[stream] = mos_from_r(emodel_r(calls["one_way_delay_s"], calls["jitter_s"], calls["loss"]))
    seen = np.full(len(records), np.nan)
    seen[video] = video_quality(records.loc[video, "mean_rate_bps"], records.loc[video, "loss"])
    mos = np.where(video, np.minimum(audio, seen), audio)
    return pd.DataFrame({"audio_mos": audio, "video_mos": seen, "mos": mos}, index=records.index)


def band(mos) -> np.ndarray:
    """Return the name of each MOS's band in ``LABELS`` ("" for NaN)."""
    mos = np.asarray(mos, dtype=float)
    return np.select([mos >= label.min_mos for label in LABELS.values()], list(LABELS), default="")


def _refuse_aggregate_video(records: pd.DataFrame, video: np.ndarray) -> None:
    aggregate = video & (records["kind"] == "aggregate").to_numpy()
    if aggregate.any():
        row = records[aggregate].iloc[0]
        raise ValueError(f"records: row {records.index[aggregate][0]!r} (app {row['app']!r}) is an aggregate "
                         "stream of a video app: its rate is its users' sum, not one call's bitrate")


def _checked(name: str, values, *, high: float = np.inf) -> np.ndarray:
    """Return ``values`` as floats, NaN passing through.

    Raises:
        ValueError: If a value is outside [0, ``high``], naming ``name`` and the first such value.
    """
    array = np.asarray(values, dtype=float)
    bad = (array < 0.0) | (array > high)
    if bad.any():
        raise ValueError(f"{name}: {array[bad].flat[0]!r} is outside [0, {high}] ({int(bad.sum())} such value(s))")
    return array
