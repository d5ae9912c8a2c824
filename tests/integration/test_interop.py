"""Files made by other tools than FFmpeg's muxers, each through every operation, against the ffmpeg CLI.

One marked source (6 s of testsrc2 at 25 fps, every picture different, with a white picture at 1.0 s and at
5.0 s and a 1 kHz beep at the same times) is encoded and muxed by GStreamer (mp4mux, qtmux, matroskamux,
webmmux, mpegtsmux, avimux, flvmux, mpegpsmux with MPEG-2), mkvmerge (from the x264 CLI's raw stream with
a WAV that starts 0.5 s late), the x264 and x265 CLIs (raw streams, x264's own MKV and FLV), and FFmpeg
oddities no other tool makes here (M2TS, a TS whose timestamps wrap through 2^33, a DVD program stream).
On each file:

- probe: the picture size, and the duration ffprobe gives within one frame;
- exact posters at 1.5 s and 4.3 s: the picture the ffmpeg CLI presents at that time decoding from the
  start (nearer to it than to its neighbours), reporting that picture's time on the file's timeline;
- a keyframe poster at 3.5 s: the last keyframe at or before it, reporting its time;
- a storyboard at 1 s: one tile per second of the file;
- an H.264 rendition with HLS: its duration the input's within a frame and a bit, and the flash-to-beep
  offset at 1 s and at 5 s (so to the end) within 10 ms of the source's; two minute-long files (AVI with
  MP3, MP4 with AAC, both at 44.1 kHz) check that offset 57 s later.

A HEIC photo (libheif's heif-enc) is refused with FORMAT_REFUSED by every command, and GStreamer's ASF
(timestamps from 1000 hours on) with TOO_LONG.

The files are made once into the test corpus (small, regenerated when missing). docs/interop.md has the
table of what each kind of file is tested for.
"""
import json
import math
import os
import re
import shutil
import struct
import subprocess

from mwtest import CORPUS, check, ffmpeg, ffprobe, finish, fresh_dir, run

OUT = fresh_dir("interop")
SMALL = (80, 60)
RATE = 25
FLASHES = (1.0, 5.0)


def source():
    """The marked source as Y4M video and WAV audio, made once."""
    os.makedirs(CORPUS, exist_ok=True)
    video, audio = os.path.join(CORPUS, "interop-src.y4m"), os.path.join(CORPUS, "interop-src.wav")
    flashes = "+".join(f"between(t,{t},{t + 0.039})" for t in FLASHES)
    beeps = "+".join(f"between(t,{t},{t + 0.05})" for t in FLASHES)
    if not os.path.exists(video):
        ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={RATE}:duration=6,drawbox=x=0:y=0:w=iw:h=ih:"
                f"color=white:t=fill:enable='{flashes}'", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", video + ".part"])
        os.replace(video + ".part", video)
    if not os.path.exists(audio):
        ffmpeg(["-f", "lavfi", "-i", f"aevalsrc='0.8*sin(2*PI*1000*t)*({beeps})':s=48000:d=6", "-ac", "1",
                "-f", "wav", audio + ".part"])
        os.replace(audio + ".part", audio)
    return video, audio


def long_source(codecs):
    """A 60 s version of the marked source, encoded by FFmpeg with codecs: marks at 1 s and at 58 s."""
    flashes = "between(t,1,1.039)+between(t,58,58.039)"
    beeps = "between(t,1,1.05)+between(t,58,58.05)"
    return [["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
             f"testsrc2=size=320x240:rate={RATE}:duration=60,drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:"
             f"enable='{flashes}'", "-f", "lavfi", "-i", f"aevalsrc='0.8*sin(2*PI*1000*t)*({beeps})':s=48000:d=60",
             "-pix_fmt", "yuv420p"] + codecs + ["{out}"]]


def vfr_timestamps():
    """A Matroska v2 timestamps file for the source's 150 pictures: 75 at 25 fps, then 75 at about 30 fps."""
    path = os.path.join(CORPUS, "interop-vfr-timestamps.txt")
    times = [n * 40.0 for n in range(75)]
    times += [times[-1] + 40 + n * 33.333 + (3 if n % 4 == 1 else -2 if n % 4 == 3 else 0) for n in range(75)]
    with open(path, "w") as f:
        f.write("# timestamp format v2\n" + "".join(f"{t:.3f}\n" for t in times))
    return path


def gst(video, audio, mux, venc, aenc=None):
    """A gst-launch-1.0 pipeline: the Y4M through venc into mux, and the WAV through aenc when given."""
    line = f"filesrc location={video} ! y4mdec ! videoconvert ! {venc} ! {mux} name=mux ! filesink location={{out}}"
    if aenc:
        line += f" filesrc location={audio} ! wavparse ! audioconvert ! audioresample ! {aenc} ! mux."
    return [["gst-launch-1.0", "-q", "-e"] + line.split()]


def x264_cli(video, out, *options):
    """The x264 CLI's encode of video into out (its container follows out's extension)."""
    return ["x264", "--quiet", "--demuxer", "y4m", "--keyint", "25", "--preset", "faster", *options, "-o", out, video]


def producers(video, audio):
    """name -> (file name, commands with {out}); made by the tools users' files come from."""
    x264 = "x264enc key-int-max=25 bframes=2 speed-preset=faster ! h264parse"
    raw264 = os.path.join(CORPUS, "interop-mkvmerge-video.264")
    return {
        "gst-mp4": ("gst.mp4", gst(video, audio, "mp4mux", x264, "avenc_aac ! aacparse")),
        "gst-fmp4": ("gst-fragmented.mp4", gst(video, audio, "mp4mux fragment-duration=1000", x264,
                                               "avenc_aac ! aacparse")),
        "gst-mp4-pyramid": ("gst-pyramid.mp4", gst(video, audio, "mp4mux",
                                                   "x264enc key-int-max=25 bframes=3 b-pyramid=true "
                                                   "speed-preset=faster ! h264parse", "avenc_aac ! aacparse")),
        "gst-mov": ("gst.mov", gst(video, audio, "qtmux", x264, "lamemp3enc ! mpegaudioparse")),
        "gst-mkv": ("gst.mkv", gst(video, audio, "matroskamux", x264, "vorbisenc")),
        "gst-webm": ("gst.webm", gst(video, audio, "webmmux", "vp8enc keyframe-max-dist=25 deadline=1",
                                     "opusenc")),
        "gst-ts": ("gst.ts", gst(video, audio, "mpegtsmux", x264, "avenc_aac ! aacparse")),
        "gst-ts-interlaced": ("gst-interlaced.ts", gst(video, audio, "mpegtsmux",
                                                       "interlace field-pattern=2:2 top-field-first=true ! "
                                                       "x264enc interlaced=true key-int-max=25 speed-preset=faster"
                                                       " ! h264parse", "avenc_aac ! aacparse")),
        "gst-m2ts": ("gst.m2ts", gst(video, audio, "mpegtsmux m2ts-mode=true", x264, "avenc_aac ! aacparse")),
        "gst-avi": ("gst.avi", gst(video, audio, "avimux", x264, "lamemp3enc ! mpegaudioparse")),
        "gst-flv": ("gst.flv", gst(video, audio, "flvmux", x264,
                                   "audio/x-raw,rate=44100 ! lamemp3enc ! mpegaudioparse")),
        "gst-avi-mpeg4": ("gst-mpeg4.avi", gst(video, audio, "avimux",
                                               "avenc_mpeg4 max-bframes=2 gop-size=25 bitrate=1000000 ! "
                                               "mpeg4videoparse", "avenc_ac3")),
        "gst-avi-mjpeg": ("gst-mjpeg.avi", gst(video, audio, "avimux", "jpegenc", None)),
        "gst-3gp": ("gst.3gp", gst(video, audio, "3gppmux",
                                   "videoscale ! video/x-raw,width=352,height=288 ! avenc_h263 gop-size=25",
                                   "audioresample ! audio/x-raw,rate=8000,channels=1 ! amrnbenc")),
        "gst-ogg": ("gst.ogv", gst(video, audio, "oggmux", "theoraenc keyframe-freq=25", "vorbisenc")),
        "gst-hevc-mp4": ("gst-hevc.mp4", gst(video, audio, "mp4mux",
                                             "x265enc key-int-max=25 speed-preset=faster ! h265parse",
                                             "avenc_aac ! aacparse")),
        "gst-mpeg2-ps": ("gst-mpeg2.mpg", gst(video, audio, "mpegpsmux",
                                              "mpeg2enc format=3 ! mpegvideoparse", "avenc_mp2 ! mpegaudioparse")),
        "x264-raw": ("x264-cli.264", [x264_cli(video, "{out}", "--bframes", "3")]),
        "x264-mkv": ("x264-cli.mkv", [x264_cli(video, "{out}", "--bframes", "3")]),
        "x264-flv": ("x264-cli.flv", [x264_cli(video, "{out}", "--bframes", "3")]),
        "x264-open-gop": ("x264-open-gop.264", [x264_cli(video, "{out}", "--open-gop", "--bframes", "5",
                                                          "--b-pyramid", "normal")]),
        "x265-raw": ("x265-cli.hevc", [["x265", "--log-level", "error", "--y4m", "--input", video, "--keyint", "25",
                                        "--preset", "faster", "--output", "{out}"]]),
        "mkvmerge": ("mkvmerge.mkv", [x264_cli(video, raw264, "--bframes", "3"),
                                      ["mkvmerge", "-q", "-o", "{out}", "--default-duration", "0:25fps", raw264,
                                       "--sync", "0:500", audio]]),
        # Variable frame rate: 25 fps, then 30 fps with a few ms of jitter, from a timestamps file.
        "mkvmerge-vfr": ("mkvmerge-vfr.mkv", [x264_cli(video, raw264, "--bframes", "3"),
                                              ["mkvmerge", "-q", "-o", "{out}", "--timestamps", f"0:{vfr_timestamps()}",
                                               raw264, audio]]),
        # From gst-mp4's file, made above.
        "mkvmerge-from-mp4": ("mkvmerge-from-mp4.mkv", [["mkvmerge", "-q", "-o", "{out}",
                                                         os.path.join(CORPUS, "interop-gst.mp4")]]),
        "ffmpeg-pts-wrap-ts": ("pts-wrap.ts", [["ffmpeg", "-v", "error", "-y", "-i", video, "-i", audio, "-c:v",
                                                "libx264", "-g", "25", "-c:a", "aac", "-output_ts_offset",
                                                "95441.0", "-f", "mpegts", "{out}"]]),
        # Cut without re-encoding from 1.3 s: the edit list starts in the middle of a GOP, so the pictures
        # from the keyframe before it are decoded but not shown.
        "ffmpeg-mid-gop-cut": ("mid-gop-cut.mp4", [["ffmpeg", "-v", "error", "-y", "-ss", "0.3", "-i", os.path.join(
            CORPUS, "interop-gst.mp4"), "-c", "copy", "{out}"]]),
        "ffmpeg-mov-timecode-hevc": ("timecode-hevc.mov", [["ffmpeg", "-v", "error", "-y", "-i", video, "-i", audio,
                                                            "-c:v", "libx265", "-x265-params", "log-level=error:keyint=25",
                                                            "-tag:v", "hvc1", "-c:a", "aac", "-timecode",
                                                            "01:00:00:00", "{out}"]]),
        "ffmpeg-negative-cts": ("negative-cts.mp4", [["ffmpeg", "-v", "error", "-y", "-i", video, "-i", audio,
                                                      "-c:v", "libx264", "-g", "25", "-bf", "3", "-c:a", "aac",
                                                      "-movflags", "negative_cts_offsets", "{out}"]]),
        # A minute long, so that A/V sync is checked far from the start: a drift of the audio against the
        # pictures (sample rate conversion, MP3 frames in AVI) shows at the second mark.
        "ffmpeg-long-avi-mp3": ("long-mp3.avi", long_source(["-c:v", "libx264", "-g", "50", "-bf", "2", "-c:a",
                                                             "libmp3lame", "-ar", "44100"])),
        "ffmpeg-long-mp4-aac": ("long-aac.mp4", long_source(["-c:v", "libx264", "-g", "50", "-c:a", "aac", "-ar",
                                                             "44100"])),
        # Without scene-change keyframes: FFmpeg's MPEG-2 encoder makes two at each white picture, and its
        # program stream muxer then leaves one without a PTS, which the CLI itself shows at the time of the
        # next picture (there is no oracle for that picture's time).
        "ffmpeg-dvd-ps": ("dvd.vob", [["ffmpeg", "-v", "error", "-y", "-i", video, "-i", audio, "-target",
                                       "pal-dvd", "-s", "320x240", "-r", "25", "-g", "12", "-b:v", "2M",
                                       "-sc_threshold", "1000000000", "{out}"]]),
    }


def make(name, file_name, commands):
    """The producer's file in the corpus, made when missing; None (and a failed check) when a tool fails."""
    path = os.path.join(CORPUS, "interop-" + file_name)
    if os.path.exists(path):
        return path
    part = path + ".part" + os.path.splitext(file_name)[1]
    for command in commands:
        command = [c.replace("{out}", part) for c in command]
        if shutil.which(command[0]) is None:
            check(False, f"{name}: {command[0]} is not installed (scripts/install-deps installs it)")
            return None
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            check(False, f"{name}: could not make the file: {' '.join(command)}: {proc.stderr[-800:]}")
            return None
    if not os.path.exists(part):
        check(False, f"{name}: {commands[-1][0]} made no file")
        return None
    os.replace(part, path)
    return path


class Reference:
    """What the ffmpeg CLI presents, decoding the file from the start: each picture's time on the file's
    timeline (the CLI counts from the container's start time, as players do), whether it is a keyframe, and
    its pixels at SMALL size in gray. The times and key flags are the CLI's own (showinfo), so a raw stream
    gets the CLI's timestamps and a decode-time container the CLI's reordering."""

    def __init__(self, path):
        info = ffprobe(path)
        self.start = float(info["format"].get("start_time", 0))
        self.video = next(s for s in info["streams"] if s["codec_type"] == "video")
        self.has_audio = any(s["codec_type"] == "audio" for s in info["streams"])
        # The audio is decoded too (into a null output): the CLI counts from the start of the streams it
        # uses, and a player uses both.
        proc = subprocess.run(["ffmpeg", "-hide_banner", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough",
                               "-vf", f"scale={SMALL[0]}:{SMALL[1]},showinfo", "-f", "rawvideo", "-pix_fmt", "gray",
                               "pipe:1", "-map", "0:a:0?", "-f", "null", "-"],
                              capture_output=True, check=True, timeout=120)
        shown = re.findall(rb"\] n: *\d+ pts: *-?\d+ pts_time:(-?[0-9.]+) .*? iskey:(\d)", proc.stderr)
        self.times = [float(t) for t, _ in shown]
        self.keys = [k == b"1" for _, k in shown]
        area = SMALL[0] * SMALL[1]
        self.pictures = [proc.stdout[n * area:(n + 1) * area] for n in range(len(proc.stdout) // area)]
        # A raw stream has no duration of its own: its pictures' span is what the CLI would say.
        self.duration = float(info["format"].get("duration") or (self.times[-1] + 1 / RATE if self.times else 0))

    def shown_at(self, t):
        """Index of the picture a player shows at t: the last one that started at or before t."""
        shown = [n for n, time in enumerate(self.times) if time <= t + 1e-6]
        return shown[-1] if shown else 0


def small_gray(path):
    return subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-vf", f"scale={SMALL[0]}:{SMALL[1]}",
                           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                          capture_output=True, check=True, timeout=60).stdout


def difference(a, b):
    return sum(abs(x - y) for x, y in zip(a, b)) / max(1, min(len(a), len(b)))


def check_picture(name, what, image, ref, number):
    """image is picture number of ref: nearer to it than to the pictures before and after."""
    near = [difference(image, ref.pictures[n]) for n in (number - 1, number, number + 1)
            if 0 <= n < len(ref.pictures)]
    mine = difference(image, ref.pictures[number])
    check(mine < 8 and mine <= min(near), f"{name}: {what} is picture {number} at {ref.times[number]:.3f} s "
                                          f"(difference {mine:.1f}, neighbours {[round(d, 1) for d in near]})")


def check_posters(name, clip, ref):
    for at in (1.5, 4.3):
        out = os.path.join(OUT, f"{name}-exact-{at}.png")
        proc = run(["thumbnail", clip, "-o", out, "--at", str(at), "--select", "exact"], timeout=120)
        result = json.loads(proc.stdout or "{}")
        number = ref.shown_at(at)
        check(proc.returncode == 0 and abs(result.get("time", -1) - ref.times[number]) < 0.005,
              f"{name}: exact poster at {at} s reports {result.get('time')}, the picture shown then is at "
              f"{ref.times[number]:.3f} s ({proc.stderr[-300:] if proc.returncode else 'ok'})")
        if proc.returncode == 0:
            check_picture(name, f"the exact poster at {at} s", small_gray(out), ref, number)
    keyframes = [n for n, key in enumerate(ref.keys) if key and ref.times[n] <= 3.5 + 1e-6]
    out = os.path.join(OUT, f"{name}-key.png")
    proc = run(["thumbnail", clip, "-o", out, "--at", "3.5", "--select", "keyframe"], timeout=120)
    result = json.loads(proc.stdout or "{}")
    if not keyframes:
        check(False, f"{name}: ffprobe finds no keyframe before 3.5 s")
        return
    number = max(keyframes, key=lambda n: ref.times[n])
    check(proc.returncode == 0 and abs(result.get("time", -1) - ref.times[number]) < 0.005,
          f"{name}: keyframe poster at 3.5 s reports {result.get('time')}, the last keyframe by then is at "
          f"{ref.times[number]:.3f} s")
    if proc.returncode == 0:
        check_picture(name, "the keyframe poster at 3.5 s", small_gray(out), ref, number)
    # Just before that keyframe is shown (in decode-time containers it is decoded well before), the
    # keyframe before it is the poster.
    earlier = [n for n in keyframes if ref.times[n] < ref.times[number] - 0.015]
    if earlier:
        at = ref.times[number] - 0.01
        previous = max(earlier, key=lambda n: ref.times[n])
        proc = run(["thumbnail", clip, "-o", out, "--at", f"{at:.3f}", "--select", "keyframe"], timeout=120)
        result = json.loads(proc.stdout or "{}")
        check(proc.returncode == 0 and abs(result.get("time", -1) - ref.times[previous]) < 0.005,
              f"{name}: keyframe poster at {at:.3f} s reports {result.get('time')}, the keyframe shown by then is "
              f"at {ref.times[previous]:.3f} s")


def flash_and_beep(path):
    """Times (on the file's timeline) of the white pictures and the beeps, as the ffmpeg CLI decodes them."""
    ref = Reference(path)
    flashes = []
    for n, picture in enumerate(ref.pictures):
        if sum(picture[::7]) / len(picture[::7]) > 200 and (not flashes or ref.times[n] - flashes[-1] > 1):
            flashes.append(ref.times[n])
    info = ffprobe(path)
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    start = float(audio.get("start_time", 0)) - ref.start
    samples = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:a:0", "-ac", "1", "-ar", "48000",
                              "-f", "s16le", "-"], capture_output=True, check=True, timeout=60).stdout
    beeps = []
    for i in range(len(samples) // 2):
        if abs(struct.unpack_from("<h", samples, 2 * i)[0]) > 3000 and (not beeps or start + i / 48000 - beeps[-1] > 1):
            beeps.append(start + i / 48000)
    return flashes, beeps


def check_transcode(name, clip, ref):
    folder = os.path.join(OUT, f"{name}-transcode")
    proc = run(["transcode", clip, "-o", folder, "--renditions", "240", "--hls", "--no-remux"], timeout=300)
    rendition = os.path.join(folder, "web_240p.mp4")
    check(proc.returncode == 0 and os.path.exists(rendition),
          f"{name}: transcode with HLS: {proc.stderr[-500:]}")
    if not os.path.exists(rendition):
        return
    made = float(ffprobe(rendition)["format"]["duration"])
    # The input's length: its last picture's end, or its audio's end where that is longer (one length rule).
    video_end = ref.times[-1] + 1 / RATE
    check(made >= video_end - 1 / RATE - 0.005 and made <= ref.duration + 1 / RATE + 0.05,
          f"{name}: rendition lasts {made:.3f} s, the input's video ends at {video_end:.3f} s of {ref.duration:.3f} s")
    if not ref.has_audio:
        return
    source_flashes, source_beeps = flash_and_beep(clip)
    made_flashes, made_beeps = flash_and_beep(rendition)
    if len(source_flashes) != 2 or len(source_beeps) != 2:
        check(False, f"{name}: the source's marks are not where they were put: flashes {source_flashes}, "
                     f"beeps {source_beeps}")
        return
    check(len(made_flashes) == 2 and len(made_beeps) == 2, f"{name}: the rendition keeps both marks: flashes "
                                                           f"{made_flashes}, beeps {made_beeps}")
    for k in range(min(len(made_flashes), len(made_beeps), 2)):
        source_offset = source_flashes[k] - source_beeps[k]
        made_offset = made_flashes[k] - made_beeps[k]
        check(abs(made_offset - source_offset) <= 0.010,
              f"{name}: picture-to-sound offset at mark {k + 1}: {made_offset * 1000:.1f} ms in the rendition, "
              f"{source_offset * 1000:.1f} ms in the source")


def refusals(video, audio):
    """name -> (file name, commands, error code): files of kinds no operation reads, refused by each."""
    still = os.path.join(CORPUS, "interop-still.png")
    return {
        # GStreamer's encoders stamp their output from 1000 hours on and asfmux writes that into the packets
        # while its header says the file starts at 0: libavformat's ASF reader then gives the file a length
        # of 1000 hours (the ffmpeg CLI itself shows its pictures from -694962 s). Refused as too long.
        "gst-asf": ("gst.wmv", gst(video, audio, "asfmux", "avenc_wmv2 gop-size=25 bitrate=1000000",
                                   "avenc_wmav2"), "TOO_LONG"),
        # An iPhone's kind of photo: libavformat's MP4 reader would call it a broken MP4 (INVALID_DATA).
        "heif-enc-heic": ("image.heic", [["ffmpeg", "-v", "error", "-y", "-i", video, "-frames:v", "1", still],
                                         ["heif-enc", "-q", "60", "-o", "{out}", still]], "FORMAT_REFUSED"),
    }


def check_refused(name, clip, code):
    for command in (["probe", clip], ["thumbnail", clip, "-o", os.path.join(OUT, f"{name}.png")],
                    ["storyboard", clip, "-o", os.path.join(OUT, f"{name}-storyboard")],
                    ["transcode", clip, "-o", os.path.join(OUT, f"{name}-transcode"), "--renditions", "240"]):
        proc = run(command, timeout=120)
        error = (json.loads(proc.stdout or "{}").get("error") or {})
        check(proc.returncode != 0 and error.get("code") == code,
              f"{name}: {command[0]} refuses it with {code}: exit {proc.returncode}, {error}")


def check_file(name, clip):
    ref = Reference(clip)
    check(len(ref.pictures) == len(ref.times) and len(ref.pictures) >= 140,
          f"{name}: ffmpeg decodes {len(ref.pictures)} pictures with {len(ref.times)} times")
    proc = run(["probe", clip], timeout=60)
    info = json.loads(proc.stdout or "{}")
    video = next((s for s in info.get("streams", []) if s.get("type") == "video"), {})
    duration = (info.get("format") or {}).get("duration")
    size = (ref.video["width"], ref.video["height"])
    check(proc.returncode == 0 and (video.get("width"), video.get("height")) == size,
          f"{name}: probe {video.get('width')}x{video.get('height')} {proc.stderr[-300:]}")
    check(duration is not None and abs(duration - ref.duration) <= 1 / RATE + 0.005,
          f"{name}: probe duration {duration}, ffprobe {ref.duration:.3f}")
    check_posters(name, clip, ref)
    board_dir = os.path.join(OUT, f"{name}-storyboard")
    proc = run(["storyboard", clip, "-o", board_dir, "--interval", "1"], timeout=120)
    board = json.loads(proc.stdout or "{}")
    # A tile at 0, 1, 2 ... s for every second the file has begun.
    check(proc.returncode == 0 and board.get("tile_count") == math.ceil(ref.duration - 0.005),
          f"{name}: storyboard of {ref.duration:.2f} s: {board.get('tile_count')} tiles {proc.stderr[-300:]}")
    check_transcode(name, clip, ref)


def main():
    video, audio = source()
    only = set(os.environ.get("MW_INTEROP_ONLY", "").split(",")) - {""}
    for name, (file_name, commands) in producers(video, audio).items():
        if only and name not in only:
            continue
        clip = make(name, file_name, commands)
        if clip:
            check_file(name, clip)
    for name, (file_name, commands, code) in refusals(video, audio).items():
        if only and name not in only:
            continue
        clip = make(name, file_name, commands)
        if clip:
            check_refused(name, clip, code)
    finish()


if __name__ == "__main__":
    main()
