"""`mediaworker probe` against ffprobe on the generated corpus, and clean errors on broken and hostile files.

ffprobe is the oracle: for every corpus file each field the probe reports is compared with what ffprobe
says about the same file. Our spellings follow ffprobe's except rotation (clockwise degrees to display
upright; ffprobe prints the display matrix's counter-clockwise angle) and unknown values ("unknown" where
ffprobe omits the field).
"""
import json
import os
import struct
import zlib

import corpus
from mwtest import CORPUS, FIXTURES, check, finish, media, run

IMAGE_DEMUXERS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe"}
HDR_FILES = {"hdr10_pq.mp4"}
TEN_BIT_FILES = {"hdr10_pq.mp4"}


def ours(path):
    proc = run(["probe", path], check_rc=0)
    return json.loads(proc.stdout)


def ffprobe_rotation(stream):
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return (-int(side["rotation"])) % 360
    return 0


def compare_format(name, theirs, mine):
    tf, mf = theirs["format"], mine["format"]
    if tf["format_name"] in IMAGE_DEMUXERS:
        check(mf["name"].endswith("_pipe"), f"{name}: image demuxer {mf['name']}")
    else:
        check(mf["name"] == tf["format_name"], f"{name}: format {mf['name']} != {tf['format_name']}")
    if "duration" in tf and tf["format_name"] not in IMAGE_DEMUXERS:
        check(mf["duration"] is not None and abs(mf["duration"] - float(tf["duration"])) < 1e-3,
              f"{name}: duration {mf['duration']} != {tf['duration']}")
    if "bit_rate" in tf and tf["format_name"] not in IMAGE_DEMUXERS:
        check(int(mf["bit_rate"]) == int(tf["bit_rate"]), f"{name}: bit_rate {mf['bit_rate']} != {tf['bit_rate']}")
    check(int(mf["size"]) == int(tf["size"]), f"{name}: size {mf['size']} != {tf['size']}")
    check(mf["stream_count"] == tf["nb_streams"], f"{name}: stream count")
    check(mf["chapter_count"] == len(theirs.get("chapters", [])), f"{name}: chapter count")
    for tag in ("title", "encoder", "major_brand"):
        if tag in tf.get("tags", {}):
            check(mf["tags"].get(tag) == tf["tags"][tag], f"{name}: tag {tag}")


def compare_optional(name, field, theirs, mine_value, unknown):
    """Fields ffprobe omits when unknown must be our `unknown` value then."""
    expected = theirs.get(field, unknown)
    check(mine_value == expected, f"{name}: {field} {mine_value!r} != {expected!r}")


def compare_video(name, ts, ms):
    for field in ("pix_fmt", "width", "height", "r_frame_rate", "avg_frame_rate"):
        check(ms[field] == ts[field], f"{name}: {field} {ms[field]!r} != {ts[field]!r}")
    for field in ("sample_aspect_ratio", "display_aspect_ratio"):
        if field in ts and ts[field] != "N/A":
            check(ms[field] == ts[field], f"{name}: {field} {ms[field]} != {ts[field]}")
    for field in ("color_primaries", "color_transfer", "color_space", "color_range"):
        compare_optional(name, field, ts, ms[field], "unknown")
    compare_optional(name, "field_order", ts, ms["field_order"], "unknown")
    if "nb_frames" in ts:
        check(ms["frame_count"] == int(ts["nb_frames"]), f"{name}: frame_count {ms['frame_count']} != {ts['nb_frames']}")
    check(ms["rotation"] == ffprobe_rotation(ts), f"{name}: rotation {ms['rotation']} != {ffprobe_rotation(ts)}")
    check(ms["bit_depth"] == (10 if name in TEN_BIT_FILES else 8), f"{name}: bit_depth {ms['bit_depth']}")
    check(ms["hdr"] == (name in HDR_FILES), f"{name}: hdr {ms['hdr']}")


def compare_audio(name, ts, ms):
    check(ms["sample_rate"] == int(ts["sample_rate"]), f"{name}: sample_rate")
    check(ms["channels"] == ts["channels"], f"{name}: channels")
    if "channel_layout" in ts:
        check(ms["channel_layout"] == ts["channel_layout"], f"{name}: layout {ms['channel_layout']} != {ts['channel_layout']}")


def compare_streams(name, theirs, mine):
    for ts, ms in zip(theirs["streams"], mine["streams"]):
        label = f"{name}#{ts['index']}"
        check(ms["type"] == ts["codec_type"], f"{label}: type")
        check(ms["codec"] == ts["codec_name"], f"{label}: codec {ms['codec']} != {ts['codec_name']}")
        check(ms["profile"] == ts.get("profile"), f"{label}: profile {ms['profile']} != {ts.get('profile')}")
        their_level = ts.get("level", -99)
        check(ms["level"] == (None if their_level == -99 else their_level), f"{label}: level {ms['level']} != {their_level}")
        check(ms["language"] == ts.get("tags", {}).get("language", ""), f"{label}: language")
        check(ms["default"] == bool(ts["disposition"]["default"]), f"{label}: default disposition")
        check(ms["attached_pic"] == bool(ts["disposition"]["attached_pic"]), f"{label}: attached_pic")
        if ts["codec_type"] == "video":
            compare_video(name, ts, ms)
        elif ts["codec_type"] == "audio":
            compare_audio(label, ts, ms)


def test_corpus_matches_ffprobe():
    from mwtest import ffprobe
    files = corpus.build()
    check(len(files) >= 20, f"corpus has only {len(files)} files")
    for name, path in sorted(files.items()):
        theirs = ffprobe(path)
        mine = ours(path)
        compare_format(name, theirs, mine)
        check(len(mine["streams"]) == len(theirs["streams"]), f"{name}: stream list length")
        compare_streams(name, theirs, mine)
    rotations = {ours(files[f"rotate{d}.mp4"])["streams"][0]["rotation"] for d in (90, 180, 270)}
    check(rotations == {90, 180, 270}, f"rotated corpus files give three distinct rotations: {rotations}")
    cover = ours(files["cover_art.mp3"])
    check(any(s["attached_pic"] for s in cover["streams"]), "cover art stream is flagged as attached picture")


def expect_failure(path, code, env=None):
    proc = run(["probe", path], env=env)
    check(proc.returncode == 1, f"{os.path.basename(path)}: exit {proc.returncode}, expected 1")
    try:
        error = json.loads(proc.stdout)["error"]
    except (ValueError, KeyError):
        check(False, f"{os.path.basename(path)}: no JSON error on stdout: {proc.stdout[:200]!r}")
        return
    check(error["code"] == code, f"{os.path.basename(path)}: error {error['code']}, expected {code}")
    check("AddressSanitizer" not in proc.stderr and "runtime error" not in proc.stderr,
          f"{os.path.basename(path)}: sanitizer report")


def pixel_bomb_png(path, width, height):
    """A few hundred bytes that declare a huge picture: the header is honest, the data is not there."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * 4096)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def test_broken_and_hostile_files():
    broken = os.path.join(FIXTURES, "broken")
    hostile = os.path.join(FIXTURES, "hostile")
    expect_failure(os.path.join(broken, "zero-bytes.mp4"), "INVALID_DATA")
    expect_failure(os.path.join(broken, "random-bytes.mp4"), "INVALID_DATA")
    expect_failure(os.path.join(broken, "truncated.mp4"), "INVALID_DATA")
    # Matroska says EIO for an element cut short: about the data, not this machine (EIO is retried).
    whole = media("probe-whole.mkv", ["-f", "lavfi", "-i", "testsrc2=duration=1", "-c:v", "libx264",
                                      "-preset", "ultrafast"])
    cut = os.path.join(CORPUS, "truncated-header.mkv")
    with open(whole, "rb") as f, open(cut, "wb") as out:
        out.write(f.read(200))
    expect_failure(cut, "INVALID_DATA")
    expect_failure(os.path.join(hostile, "playlist.mp4"), "FORMAT_REFUSED")
    expect_failure(os.path.join(hostile, "ffconcat.mp4"), "FORMAT_REFUSED")
    expect_failure(os.path.join(hostile, "ansi-text.mp4"), "INVALID_DATA")
    expect_failure("/nonexistent/clip.mp4", "ENOENT")
    expect_failure(CORPUS, "NOT_REGULAR_FILE")

    bomb = os.path.join(CORPUS, "pixel-bomb-8000.png")
    pixel_bomb_png(bomb, 8000, 8000)
    expect_failure(bomb, "TOO_MANY_PIXELS")
    pixel_bomb_png(bomb, 100000, 100000)
    expect_failure(bomb, "TOO_MANY_PIXELS")
    stream_bomb = media("stream-bomb.mkv", ["-f", "lavfi", "-i", "sine=duration=0.2"] +
                        sum((["-map", "0:a"] for _ in range(40)), []) + ["-c:a", "flac"])
    expect_failure(stream_bomb, "TOO_MANY_STREAMS")
    duration_bomb = media("duration-bomb.mkv", ["-f", "lavfi", "-i", "color=size=64x64:rate=1", "-frames:v", "2",
                                                "-vf", "setpts=N*36000/TB", "-c:v", "libx264", "-preset", "ultrafast"])
    expect_failure(duration_bomb, "TOO_LONG")
    sample = corpus.path("h264_aac.mp4")
    expect_failure(sample, "INPUT_TOO_LARGE", env={"MW_MAX_INPUT_BYTES": "1000"})
    expect_failure(sample, "TOO_LONG", env={"MW_MAX_DURATION_MS": "500"})
    expect_failure(sample, "TOO_MANY_PIXELS", env={"MW_MAX_PIXELS": "10000"})


def test_batch_keeps_going():
    good = corpus.path("h264_aac.mp4")
    bad = os.path.join(FIXTURES, "broken", "random-bytes.mp4")
    proc = run(["probe", good, bad, good])
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    check(proc.returncode == 1, "a batch with a failure exits 1")
    check(len(lines) == 3 and "error" in lines[1] and "streams" in lines[2], "batch prints one line per file")


def test_configuration_errors():
    proc = run(["probe", corpus.path("h264_aac.mp4")], env={"MW_MAX_STREAMS": "0"})
    check(proc.returncode == 2 and "MW_MAX_STREAMS" in proc.stderr and "from 1 to 1024" in proc.stderr,
          f"invalid variable is named with its range: {proc.stderr!r}")
    proc = run(["probe"])
    check(proc.returncode == 2, "missing argument is a usage error")
    proc = run(["probe", "--help"])
    check(proc.returncode == 0 and "usage: mediaworker probe" in proc.stdout, "probe --help")


if __name__ == "__main__":
    test_corpus_matches_ffprobe()
    test_broken_and_hostile_files()
    test_batch_keeps_going()
    test_configuration_errors()
    finish()
