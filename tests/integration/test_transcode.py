"""Transcoding end to end with ffprobe/ffmpeg as the oracle: renditions, keyframe alignment, HLS, A/V sync,
rotation, VFR, remux fast path, audio-only and video-only inputs, corrupt and runaway inputs, the job
operation and the progress bar. Inputs are a few seconds at small sizes so the whole run stays short."""
import json
import math
import os
import pty
import subprocess
import time

from mwtest import BIN, check, ffprobe, finish, fresh_dir, media, run

CLIP = media("tc-clip-640x360.mkv", [
    "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=4",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=4",
    "-c:v", "mpeg4", "-q:v", "5", "-c:a", "libmp3lame", "-shortest"])
# A white flash on video and a 1 kHz beep on audio, both at exactly 1.5 s.
SYNC = media("tc-sync.mkv", [
    "-f", "lavfi", "-i", "color=black:size=320x240:rate=30:duration=3,"
                         "drawbox=color=white:t=fill:enable='between(t,1.5,1.6)'",
    "-f", "lavfi", "-i", "aevalsrc='if(between(t,1.5,1.6),0.8*sin(2*PI*1000*t),0)':s=44100:d=3",
    "-c:v", "mpeg4", "-q:v", "3", "-c:a", "libmp3lame"])
WEB = media("tc-web-640x360-600k.mp4", [
    "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=6",
    "-f", "lavfi", "-i", "sine=sample_rate=48000:duration=6",
    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "60", "-b:v", "600k",
    "-c:a", "aac", "-movflags", "+faststart"])
HEAVY = media("tc-heavy-320x240.mp4", [
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
    "-qp", "0", "-pix_fmt", "yuv420p", "-movflags", "+faststart"])
UPRIGHT = media("tc-marker.mp4", [
    "-f", "lavfi", "-i", "color=black:size=320x240:rate=25:duration=2,"
                         "drawbox=x=0:y=0:w=80:h=60:color=white:t=fill",
    "-f", "lavfi", "-i", "sine=sample_rate=48000:duration=2",
    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
ROTATED = media("tc-rotated.mp4", ["-i", UPRIGHT, "-c", "copy", "-metadata:s:v:0", "rotate=90"])
VFR = media("tc-vfr.mkv", [
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=3",
    "-f", "lavfi", "-i", "sine=sample_rate=48000:duration=3",
    "-vf", "select='if(lt(t,1),1,not(mod(n,3)))'", "-vsync", "vfr", "-c:v", "mpeg4", "-c:a", "libmp3lame"])
AUDIO_ONLY = media("tc-audio.mp3", ["-f", "lavfi", "-i", "sine=sample_rate=44100:duration=2", "-c:a", "libmp3lame"])
# Long enough (about a second of encoding) to watch the threads' priorities while it runs.
PRIORITY = media("tc-priority-1280x720.mp4", ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=8",
                                              "-c:v", "mpeg4", "-q:v", "5"])
VIDEO_ONLY = media("tc-video.mp4", ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
                                    "-c:v", "mpeg4"])
HDR = media("tc-hdr10.mp4", [
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-pix_fmt", "yuv420p10le",
    "-c:v", "libx264", "-preset", "ultrafast", "-color_trc", "smpte2084", "-color_primaries", "bt2020",
    "-colorspace", "bt2020nc"])
INTERLACED = media("tc-interlaced.mpg", [
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
    "-vf", "tinterlace=mode=interleave_top,setfield=tff", "-c:v", "mpeg2video", "-flags", "+ildct+ilme", "-top", "1"])
ODD = media("tc-odd-321x241.avi", ["-f", "lavfi", "-i", "testsrc2=size=321x241:rate=25:duration=2",
                                    "-c:v", "mjpeg", "-pix_fmt", "yuvj422p"])
RAW_H264 = media("tc-raw.h264", ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
                                 "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "h264"])
# Two audio tracks, the second one the default and the only audible one, plus a subtitle track.
SUBTITLES = os.path.join(fresh_dir("tc-subtitles"), "subs.srt")
with open(SUBTITLES, "w") as subs:
    subs.write("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
TRACKS = media("tc-tracks.mkv", [
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
    "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-f", "lavfi", "-i", "sine=frequency=800:sample_rate=48000",
    "-i", SUBTITLES, "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s",
    "-c:v", "mpeg4", "-c:a", "aac", "-c:s", "subrip", "-t", "2", "-disposition:a:0", "0", "-disposition:a:1", "default"])
# BT.709-tagged 8-bit 4:2:0: a rendition at its own size needs no conversion.
TAGGED = media("tc-bt709-320x240.mp4", [
    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
    "-pix_fmt", "yuv420p", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"])
SEGMENT = media("tc-seg.ts", ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30:duration=2",
                              "-c:v", "mpeg2video"])


def transcode(src, out, *extra, expect_rc=0):
    proc = run(["transcode", src, "-o", out] + list(extra), timeout=240)
    check(proc.returncode == expect_rc, f"transcode {os.path.basename(src)} {extra}: exit {proc.returncode}, "
                                        f"expected {expect_rc}: {proc.stderr[-1500:]}")
    if proc.returncode == 0:
        return json.loads(proc.stdout)
    return None


def moov_before_mdat(path):
    with open(path, "rb") as f:
        data = f.read()
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        kind = data[offset + 4:offset + 8]
        if kind in (b"moov", b"mdat"):
            return kind == b"moov"
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        if size < 8:
            return False
        offset += size
    return False


def packets(path, stream="v"):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries",
                          "packet=pts_time,flags,size", "-of", "json", path],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return json.loads(out)["packets"]


def keyframe_times(path):
    return [round(float(p["pts_time"]), 3) for p in packets(path) if "K" in p["flags"]]


def streams(info, kind):
    return [s for s in info["streams"] if s["codec_type"] == kind]


def decodes(path, extra=()):
    proc = subprocess.run(["ffmpeg", "-v", "error", "-xerror"] + list(extra) + ["-i", path, "-f", "null", "-"],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode == 0 and not proc.stderr.strip()


def no_temporaries(folder):
    left = [name for root, dirs, files in os.walk(folder) for name in files + dirs
            if name.startswith(".") or ".tmp" in name]
    return not left, left


def test_ladder_and_hls():
    out = fresh_dir("tc-ladder")
    result = transcode(CLIP, out, "--renditions", "1080,360,240", "--hls")
    if not result:
        return
    names = [o["path"] for o in result["outputs"]]
    check(names == ["web_360p.mp4", "web_240p.mp4", "hls/master.m3u8"], f"outputs {names}")
    sizes = {}
    key_times = []
    for name, size in (("web_360p.mp4", (640, 360)), ("web_240p.mp4", (426, 240))):
        path = os.path.join(out, name)
        info = ffprobe(path)
        video, audio = streams(info, "video"), streams(info, "audio")
        check(len(video) == 1 and len(audio) == 1, f"{name}: one video and one audio stream")
        v, a = video[0], audio[0]
        sizes[name] = (v["width"], v["height"])
        check((v["width"], v["height"]) == size, f"{name}: size {v['width']}x{v['height']}, expected {size}")
        check(v["codec_name"] == "h264" and v["profile"] == "High" and v["pix_fmt"] == "yuv420p",
              f"{name}: {v['codec_name']} {v.get('profile')} {v['pix_fmt']}")
        check(v.get("color_space") == "bt709" and v.get("color_primaries") == "bt709", f"{name}: colour tags")
        check(a["codec_name"] == "aac" and a["profile"] == "LC" and a["sample_rate"] == "48000"
              and a["channels"] == 2, f"{name}: audio {a['codec_name']} {a['sample_rate']} {a['channels']}")
        check(abs(float(info["format"]["duration"]) - 4.0) < 0.1, f"{name}: duration {info['format']['duration']}")
        check(moov_before_mdat(path), f"{name}: moov is not before mdat")
        key_times.append(keyframe_times(path))
    check(key_times[0] == key_times[1], f"keyframes differ between renditions: {key_times}")
    check(len(key_times[0]) >= 2 and all(abs(b - a - 2.0) < 0.05 for a, b in zip(key_times[0], key_times[0][1:])),
          f"keyframes not every 2 s: {key_times[0]}")
    master = open(os.path.join(out, "hls", "master.m3u8")).read()
    variants = [line for line in master.splitlines() if line.startswith("#EXT-X-STREAM-INF")]
    check(len(variants) == 2, f"master playlist variants: {master}")
    for line in variants:
        check("BANDWIDTH=" in line and "RESOLUTION=" in line and 'CODECS="avc1.64' in line and "mp4a.40.2" in line,
              f"variant line lacks fields: {line}")
    info = ffprobe(os.path.join(out, "hls", "master.m3u8"))
    check(len(streams(info, "video")) == 2, "ffprobe does not see two video variants in the master playlist")
    for label in ("360p", "240p"):
        playlist = os.path.join(out, "hls", label, "index.m3u8")
        check(decodes(playlist), f"HLS {label} does not decode")
        text = open(playlist).read()
        check("#EXT-X-ENDLIST" in text and "#EXT-X-PLAYLIST-TYPE:VOD" in text, f"{label} playlist: {text}")
    ok, left = no_temporaries(out)
    check(ok, f"temporary files left: {left}")


def first_time(rows, threshold):
    for t, value in rows:
        if value > threshold:
            return t
    return None


def test_av_sync():
    out = fresh_dir("tc-sync")
    if not transcode(SYNC, out, "--renditions", "240"):
        return
    path = os.path.join(out, "web_240p.mp4")
    frames = subprocess.run(["ffprobe", "-v", "error", "-f", "lavfi", f"movie={path},signalstats",
                             "-show_entries", "frame=pts_time:frame_tags=lavfi.signalstats.YAVG", "-of", "json"],
                            capture_output=True, text=True, timeout=60).stdout
    video = [(float(f["pts_time"]), float(f["tags"]["lavfi.signalstats.YAVG"])) for f in json.loads(frames)["frames"]]
    sound = subprocess.run(["ffprobe", "-v", "error", "-f", "lavfi",
                            f"amovie={path},asetnsamples=480,astats=metadata=1:reset=1",
                            "-show_entries", "frame=pts_time:frame_tags=lavfi.astats.Overall.Peak_level",
                            "-of", "json"], capture_output=True, text=True, timeout=60).stdout
    audio = [(float(f["pts_time"]), float(f["tags"]["lavfi.astats.Overall.Peak_level"].replace("-inf", "-999")))
             for f in json.loads(sound)["frames"]]
    flash, beep = first_time(video, 100), first_time(audio, -20)
    check(flash is not None and abs(flash - 1.5) < 0.05, f"flash at {flash}, expected 1.5")
    check(beep is not None and abs(beep - 1.5) < 0.03, f"beep at {beep}, expected 1.5")
    if flash is not None and beep is not None:
        check(abs(flash - beep) < 0.045, f"A/V offset {flash - beep:.3f} s")


def brightest_quadrant(path, autorotate=True):
    args = ["ffmpeg", "-v", "error"] + ([] if autorotate else ["-noautorotate"]) + [
        "-i", path, "-frames:v", "1", "-vf", "scale=2:2:flags=area", "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    pixels = subprocess.run(args, capture_output=True, check=True, timeout=60).stdout
    return max(range(4), key=lambda i: pixels[i])


def test_rotation():
    out = fresh_dir("tc-rotation")
    if not transcode(ROTATED, out, "--renditions", "720"):
        return
    name = os.listdir(out)[0]
    path = os.path.join(out, name)
    v = streams(ffprobe(path), "video")[0]
    check((v["width"], v["height"]) == (240, 320), f"rotated output is {v['width']}x{v['height']}, expected 240x320")
    check(not v.get("side_data_list"), f"display matrix left in the output: {v.get('side_data_list')}")
    expected = brightest_quadrant(ROTATED)
    check(brightest_quadrant(path, autorotate=False) == expected,
          "the rotated output is not upright the way ffmpeg shows the source")


def test_vfr():
    out = fresh_dir("tc-vfr")
    if not transcode(VFR, out, "--renditions", "240"):
        return
    source = float(ffprobe(VFR)["format"]["duration"])
    info = ffprobe(os.path.join(out, "web_240p.mp4"))
    v, a = streams(info, "video")[0], streams(info, "audio")[0]
    check(abs(float(v["duration"]) - source) < 0.15, f"VFR video lasts {v['duration']} s, source {source}")
    check(abs(float(a["duration"]) - source) < 0.15, f"VFR audio lasts {a['duration']} s, source {source}")
    times = [float(p["pts_time"]) for p in packets(os.path.join(out, "web_240p.mp4"))]
    times.sort()
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
    check(min(gaps) > 0.02 and max(gaps) > 0.08, f"frame spacing not kept variable: {min(gaps)}..{max(gaps)}")


def test_unequal_streams():
    """Streams of unequal length (audio 4 s longer than the video, audio starting 0.5 s late, an MP4 whose
    audio has a 1 s empty edit) and a video switching from 24 to 30 fps: the MP4 and HLS both run from 0 to
    the end of the longer stream, video and audio alike (the video's first and last pictures held), and the
    HLS playlist's durations add up to that within a frame, as its own output check demands; keyframes stay
    on the 2 s grid where the input runs faster than its nominal rate."""
    part24 = media("fps24-3s.mkv", ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=24:duration=3",
                                    "-c:v", "libx264", "-g", "24"])
    part30 = media("fps30-3s.mkv", ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=3",
                                    "-c:v", "libx264", "-g", "30"])
    parts = os.path.join(fresh_dir("tc-unequal-list"), "parts.txt")
    with open(parts, "w") as f:
        f.write(f"file '{part24}'\nfile '{part30}'\n")
    video = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=5"]
    late_audio = media("audio-late-0.5.mkv", video + ["-itsoffset", "0.5", "-f", "lavfi", "-i", "sine=d=4.5",
                                                      "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-g", "25",
                                                      "-c:a", "aac"])
    clips = {
        "audio-longer-4s.mkv": video + ["-f", "lavfi", "-i", "sine=d=9", "-map", "0:v", "-map", "1:a",
                                        "-c:v", "libx264", "-g", "25", "-c:a", "aac"],
        "audio-late-0.5.mkv": None,
        "audio-edit-1s.mp4": video + ["-itsoffset", "1", "-i", late_audio, "-map", "0:v", "-map", "1:a",
                                      "-c:v", "libx264", "-g", "25", "-c:a", "copy"],
        "fps-24-to-30.mkv": ["-f", "concat", "-safe", "0", "-i", parts, "-f", "lavfi", "-i", "sine=d=6",
                             "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac"],
    }
    for name, args in clips.items():
        clip = late_audio if args is None else media(name, args)
        longer = float(ffprobe(clip)["format"]["duration"])   # from the file's start to its last stream's end
        out = fresh_dir(f"tc-unequal-{name}")
        if not transcode(clip, out, "--renditions", "240", "--hls", "--no-remux"):
            continue
        result = ffprobe(os.path.join(out, "web_240p.mp4"))
        for st in result["streams"]:
            check(float(st["start_time"]) == 0 and abs(float(st["duration"]) - longer) <= 0.045,
                  f"{name}: the rendition's {st['codec_type']} runs {st['start_time']}..{st['duration']} s, "
                  f"the longer stream ends at {longer:.3f} s")
        keys = keyframe_times(os.path.join(out, "web_240p.mp4"))
        check(all(abs(t - 2 * round(t / 2)) <= 0.045 for t in keys), f"{name}: keyframes off the 2 s grid: {keys}")
        with open(os.path.join(out, "hls", "240p", "index.m3u8")) as f:
            extinf = [float(line.split(":")[1].rstrip(",\n")) for line in f if line.startswith("#EXTINF:")]
        check(abs(sum(extinf) - longer) <= 0.045, f"{name}: HLS segments {extinf} add up to {sum(extinf):.3f} s, "
                                                  f"the input lasts {longer:.3f} s")


def test_remux():
    out = fresh_dir("tc-remux")
    result = transcode(WEB, out, "--renditions", "360")
    if not result:
        return
    check(result["remuxed"], "web-compliant input was re-encoded")
    path = os.path.join(out, "web_360p.mp4")
    src, dst = streams(ffprobe(WEB), "video")[0], streams(ffprobe(path), "video")[0]
    for field in ("codec_name", "profile", "level", "width", "height", "pix_fmt", "has_b_frames"):
        check(src.get(field) == dst.get(field), f"remux changed {field}: {src.get(field)} -> {dst.get(field)}")
    check([p["size"] for p in packets(WEB)] == [p["size"] for p in packets(path)], "remux changed the packets")
    check(moov_before_mdat(path), "remuxed output is not faststart")
    # Identical packets prove nothing was decoded; how much faster that is belongs to tests/bench, not here.
    again = transcode(WEB, fresh_dir("tc-remux-encoded"), "--renditions", "360", "--no-remux")
    check(again is not None and not again["remuxed"], "--no-remux still remuxed")
    heavy = transcode(HEAVY, fresh_dir("tc-heavy"), "--renditions", "240")
    check(heavy is not None and not heavy["remuxed"], "an upload far above the bitrate cap was remuxed")


def test_audio_only_and_video_only():
    out = fresh_dir("tc-audio")
    result = transcode(AUDIO_ONLY, out, "--hls")
    if result:
        check([o["path"] for o in result["outputs"]] == ["web_audio.m4a", "hls/master.m3u8"],
              f"audio-only outputs {result['outputs']}")
        info = ffprobe(os.path.join(out, "web_audio.m4a"))
        check(not streams(info, "video") and streams(info, "audio")[0]["codec_name"] == "aac",
              "audio-only input did not give an AAC-only m4a")
        check(decodes(os.path.join(out, "hls", "audio", "index.m3u8")), "audio-only HLS does not decode")
    out = fresh_dir("tc-video")
    result = transcode(VIDEO_ONLY, out, "--renditions", "240")
    if result:
        info = ffprobe(os.path.join(out, "web_240p.mp4"))
        check(not streams(info, "audio") and len(streams(info, "video")) == 1, "video-only input gained audio")
        check(result["outputs"][0]["codec"].startswith("avc1.") and "mp4a" not in result["outputs"][0]["codec"],
              f"video-only codecs {result['outputs'][0]['codec']}")


def test_hdr_and_interlaced():
    out = fresh_dir("tc-hdr")
    proc = run(["transcode", HDR, "-o", out, "--renditions", "240"], env={"MW_LOG_LEVEL": "debug"})
    check(proc.returncode == 0, f"HDR input failed: {proc.stderr[-800:]}")
    if proc.returncode == 0:
        v = streams(ffprobe(os.path.join(out, "web_240p.mp4")), "video")[0]
        check(v["pix_fmt"] == "yuv420p" and v["profile"] == "High" and v.get("color_transfer") == "bt709"
              and v.get("color_primaries") == "bt709", f"HDR output is not 8-bit SDR BT.709: {v}")
        check("tonemap" in proc.stderr, "HDR input was not tone-mapped")
    out = fresh_dir("tc-interlaced")
    proc = run(["transcode", INTERLACED, "-o", out, "--renditions", "240"], env={"MW_LOG_LEVEL": "debug"})
    check(proc.returncode == 0 and "bwdif" in proc.stderr, f"interlaced input not deinterlaced: {proc.stderr[-800:]}")
    if proc.returncode == 0:
        v = streams(ffprobe(os.path.join(out, "web_240p.mp4")), "video")[0]
        check(v.get("field_order", "progressive") == "progressive", f"output field order {v.get('field_order')}")


def test_odd_inputs():
    out = fresh_dir("tc-odd")
    result = transcode(ODD, out, "--renditions", "720")
    if result:
        v = streams(ffprobe(os.path.join(out, result["outputs"][0]["path"])), "video")[0]
        check(v["width"] % 2 == 0 and v["height"] % 2 == 0 and v["width"] <= 321 and v["height"] <= 241
              and v["pix_fmt"] == "yuv420p", f"odd input gave {v['width']}x{v['height']} {v['pix_fmt']}")
    out = fresh_dir("tc-raw")
    result = transcode(RAW_H264, out, "--renditions", "240", "--no-remux")
    if result:
        info = ffprobe(os.path.join(out, "web_240p.mp4"))
        check(abs(float(info["format"]["duration"]) - 2.0) < 0.1,
              f"raw H.264 without timestamps lasts {info['format']['duration']} s")
    # One picture (a still exported as video): its only frame leaves the decoder on the flush.
    still = media("tc-one-frame.mp4", ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "1",
                                       "-c:v", "libx264"])
    out = fresh_dir("tc-one-frame")
    result = transcode(still, out, "--renditions", "240", "--no-remux")
    if result:
        frames = packets(os.path.join(out, result["outputs"][0]["path"]))
        check(len(frames) == 1, f"a one-frame video gives a one-frame rendition: {len(frames)} packets")
    out = fresh_dir("tc-tracks")
    result = transcode(TRACKS, out, "--renditions", "240")
    if result:
        info = ffprobe(os.path.join(out, "web_240p.mp4"))
        check([s["codec_type"] for s in info["streams"]] == ["video", "audio"],
              f"tracks: {[s['codec_type'] for s in info['streams']]}")
        level = subprocess.run(["ffmpeg", "-v", "info", "-i", os.path.join(out, "web_240p.mp4"), "-af", "volumedetect",
                                "-f", "null", "-"], capture_output=True, text=True, timeout=60).stderr
        check("max_volume: -inf" not in level and "max_volume: -9" not in level,
              "the default (audible) audio track was not the one kept")


def mean_luma(path):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-frames:v", "1", "-vf", "format=gray", "-f", "rawvideo",
                          "-"], capture_output=True, check=True, timeout=60).stdout
    return sum(raw) / len(raw)


def test_rung_at_source_size():
    """The rung at the source's size and format gets no scale filter (no swscale copy), the others do; its
    picture keeps the source's levels."""
    out = fresh_dir("tc-source-size")
    proc = run(["transcode", TAGGED, "-o", out, "--renditions", "240,120", "--no-remux"], timeout=240,
               env={"MW_LOG_LEVEL": "debug"})
    check(proc.returncode == 0, f"transcode exits 0: {proc.stderr[-1500:]}")
    graphs = [json.loads(line)["msg"] for line in proc.stderr.splitlines()
              if line.startswith("{") and "video graph" in line]
    check(len(graphs) == 1, f"one video graph logged: {graphs}")
    if graphs:
        check("[s0]null" in graphs[0] and "[s1]scale=w=160:h=120" in graphs[0] and graphs[0].count("scale=") == 1,
              f"only the 120p rung is scaled: {graphs[0]}")
    if proc.returncode == 0:
        source, rung = mean_luma(TAGGED), mean_luma(os.path.join(out, "web_240p.mp4"))
        check(abs(source - rung) < 2, f"240p rung keeps the source's levels: mean Y {rung:.1f} vs {source:.1f}")
        v = streams(ffprobe(os.path.join(out, "web_240p.mp4")), "video")[0]
        check((v["width"], v["height"], v.get("color_space")) == (320, 240, "bt709"), f"240p rung: {v}")


def decoder_threads(threads, source_pixels, encoded_pixels):
    """The video decoder's share of the job's threads (transcode.c): its share of the work, counting an
    encoded pixel as three decoded ones, rounded up."""
    return max(1, min(threads, math.ceil(threads * source_pixels / (source_pixels + 3 * encoded_pixels))))


def test_threads():
    """The transcode command is the only job running, so it takes every core (as the ffmpeg CLI would); a
    worker's job processes divide the cores among themselves instead (MW_CODEC_THREADS overrides both). The
    video decoder gets the part of those threads that its share of the work calls for."""
    cores = os.cpu_count()
    upright = decoder_threads(cores, 320 * 240, 160 * 120)
    for env, decoder, encoder in [({}, upright, cores), ({"MW_JOB_PROCESSES": str(cores)}, upright, cores),
                                  ({"MW_CODEC_THREADS": "3"}, 2, 3)]:
        out = fresh_dir("tc-threads")
        proc = run(["transcode", UPRIGHT, "-o", out, "--renditions", "120", "--no-remux"],
                   env=dict(env, MW_LOG_LEVEL="debug"))
        wanted = f"threads: {decoder} for the video decoder, {encoder} per encoder of 1 rendition(s)"
        check(proc.returncode == 0 and wanted in proc.stderr, f"{env}: logs '{wanted}': {proc.stderr[-1500:]}")
    # 640x360 into 360p and 180p on 8 threads: 230400 / (230400 + 3 x 288000) of 8 is 1.7, so 2 decoder
    # threads; the two renditions share the 8 for their encoders.
    out = fresh_dir("tc-threads-ladder")
    proc = run(["transcode", CLIP, "-o", out, "--renditions", "360,180", "--no-remux"],
               env={"MW_LOG_LEVEL": "debug", "MW_CODEC_THREADS": "8"})
    wanted = "threads: 2 for the video decoder, 4 per encoder of 2 rendition(s)"
    check(proc.returncode == 0 and wanted in proc.stderr, f"ladder: logs '{wanted}': {proc.stderr[-1500:]}")


def thread_nice_values(pid):
    """{thread id: nice value} of a running process (field 19 of /proc/PID/task/TID/stat)."""
    values = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        values[int(tid)] = int(stat[stat.rindex(")") + 2:].split()[16])
    return values


def test_encoder_priority():
    """The encoders' threads (ours and libx264's own) run below the thread that decodes and scales for them,
    so that thread always gets the core it needs to keep them fed; in a ladder the smaller renditions run
    below the largest, which sets the pace."""
    out = fresh_dir("tc-priority")
    proc = subprocess.Popen([BIN, "transcode", PRIORITY, "-o", out, "--renditions", "360,180", "--no-remux"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    pace, ladder = min(own + 5, 19), min(own + 9, 19)
    seen = {pace: set(), ladder: set()}
    main_nice = set()
    while proc.poll() is None:
        try:
            values = thread_nice_values(proc.pid)
        except OSError:
            break
        if proc.pid in values:
            main_nice.add(values[proc.pid])
        for tid, nice in values.items():
            seen.setdefault(nice, set()).add(tid)
        time.sleep(0.05)
    stderr = proc.stderr.read()
    proc.stderr.close()
    check(proc.wait() == 0, f"transcode failed: {stderr[-1500:]}")
    check(main_nice == {own}, f"the decoding thread kept its priority {own}: saw {main_nice}")
    check(len(seen[pace]) >= 2, f"the 360p encoder's threads run 5 below: {len(seen[pace])} seen at {pace}")
    check(len(seen[ladder]) >= 2, f"the 180p encoder's threads run 9 below: {len(seen[ladder])} seen at {ladder}")


def test_broken_inputs():
    # The container is intact, the pictures are noise: almost nothing decodes (2 of 50 frames), and a
    # rendition of those two stretched over 2 s is refused as corrupt input, leaving nothing behind.
    corrupt = os.path.join(fresh_dir("tc-corrupt-in"), "corrupt.mp4")
    data = bytearray(open(VIDEO_ONLY, "rb").read())
    mdat = data.find(b"mdat")
    for i in range(mdat + 64, len(data) - 4096):
        data[i] = (i * 131 + 7) & 0xFF
    open(corrupt, "wb").write(bytes(data))
    out = fresh_dir("tc-corrupt")
    proc = run(["transcode", corrupt, "-o", out, "--renditions", "240"], timeout=240)
    check(proc.returncode == 1 and "video frames decode" in proc.stderr,
          f"a transcode of noise fails saying how little decodes: {proc.returncode} {proc.stderr[-600:]}")
    check(os.listdir(out) == [], f"a failed transcode left {os.listdir(out)}")
    # Ten copies of a 2 s MPEG-TS glued together: the timestamps restart, the container claims 2 s.
    looped = os.path.join(fresh_dir("tc-loop-in"), "loop.ts")
    with open(looped, "wb") as f:
        for _ in range(10):
            f.write(open(SEGMENT, "rb").read())
    out = fresh_dir("tc-loop")
    proc = run(["transcode", looped, "-o", out, "--renditions", "120"], timeout=240)
    check(proc.returncode == 1 and "beyond the input duration" in proc.stderr,
          f"looped input was not stopped as a runaway: {proc.returncode} {proc.stderr[-600:]}")
    check(os.listdir(out) == [], f"a runaway transcode left {os.listdir(out)}")


def test_job_operation():
    root = fresh_dir("tc-job")
    inputs, outputs = os.path.join(root, "in"), os.path.join(root, "out")
    os.makedirs(inputs)
    os.link(CLIP, os.path.join(inputs, "clip.mkv"))
    job = os.path.join(root, "job.json")
    env = {"MW_INPUT_ROOT": inputs, "MW_OUTPUT_ROOT": outputs}
    with open(job, "w") as f:
        json.dump({"job_id": "tc1", "user_id": 7, "file_info": {"path": "clip.mkv"},
                   "operations": [{"type": "transcode", "preset": "web", "renditions": [240], "hls": True}]}, f)
    proc = run(["run", job], env=env)
    check(proc.returncode == 0, f"transcode job failed: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    if proc.returncode == 0:
        report = json.loads(proc.stdout)["new_file"]
        kinds = {o["type"]: o for o in report["outputs"]}
        video = kinds.get("video", {})
        check(video.get("path") == "7/tc1/web_240p.mp4" and video.get("width") == 426 and video.get("height") == 240
              and video.get("bytes", 0) > 0 and video.get("codec", "").startswith("avc1.")
              and abs(video.get("duration", 0) - 4) < 0.1, f"video output descriptor {video}")
        check(kinds.get("hls", {}).get("path") == "7/tc1/hls/master.m3u8", f"hls descriptor {kinds.get('hls')}")
        check(report.get("path") == "7/tc1/web_240p.mp4", f"primary path {report.get('path')}")
    # A redelivery overwrites the same names, HLS directory included, and leaves nothing else behind.
    proc = run(["run", job], env=env)
    check(proc.returncode == 0, f"second run of the job failed: {proc.stderr[-800:]}")
    job_dir = os.path.join(outputs, "7", "tc1")
    check(sorted(os.listdir(job_dir)) == [".mw-job", ".mw-result.json", "hls", "web_240p.mp4"],
          f"after redelivery: {os.listdir(job_dir)}")
    check(decodes(os.path.join(job_dir, "hls", "240p", "index.m3u8")), "HLS after redelivery does not decode")
    with open(job, "w") as f:
        json.dump({"user_id": 7, "file_info": {"path": "clip.mkv"},
                   "operations": [{"type": "transcode", "renditions": [720, "big"]}]}, f)
    proc = run(["run", job], env=env)
    report = json.loads(proc.stdout)["new_file"] if proc.stdout.strip() else {}
    check(proc.returncode == 1 and report.get("error", {}).get("code") == "INVALID_MESSAGE"
          and "renditions" in report.get("error", {}).get("message", ""), f"bad renditions: {report}")


def test_progress_bar():
    out = fresh_dir("tc-progress")
    leader, follower = pty.openpty()
    proc = subprocess.run([BIN, "transcode", CLIP, "-o", out, "--renditions", "240"], stdout=subprocess.PIPE,
                          stderr=follower, timeout=240, env=dict(os.environ, MW_LOG_LEVEL="error"))
    os.close(follower)
    drawn = b""
    try:
        while True:
            chunk = os.read(leader, 65536)
            if not chunk:
                break
            drawn += chunk
    except OSError:
        pass
    os.close(leader)
    text = drawn.decode(errors="replace")
    check(proc.returncode == 0 and "transcode [" in text and "100.0%" in text and "ETA" in text,
          f"no progress bar on a terminal: {text[-300:]!r}")
    proc = run(["transcode", CLIP, "-o", out, "--renditions", "240"])
    check("[" not in proc.stderr.replace('"', ""), "progress bar drawn on a non-terminal")


for test in (test_ladder_and_hls, test_av_sync, test_rotation, test_vfr, test_unequal_streams, test_remux, test_audio_only_and_video_only,
             test_hdr_and_interlaced, test_odd_inputs, test_rung_at_source_size, test_threads, test_encoder_priority,
             test_broken_inputs, test_job_operation, test_progress_bar):
    print("--", test.__name__, flush=True)
    test()
finish()
