"""The generated media corpus: every kind of file an upload pipeline meets, made with the ffmpeg CLI.

Entries are (name, ffmpeg arguments before the output path, encoder that must exist). Clips are short and
small so the whole corpus builds in seconds; the properties under test (codecs, rotation, colour tags,
aspect ratios, layouts) do not depend on size.
"""
import os

from mwtest import CORPUS, has_encoder, media

TESTSRC = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"]
SINE = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2"]

ENTRIES = [
    ("h264_aac.mp4", TESTSRC + SINE + ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest"], "libx264"),
    ("h264_aac_faststart.mov", TESTSRC + SINE + ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                                                  "-movflags", "+faststart", "-metadata", "title=Holiday"], "libx264"),
    ("hevc_aac.mkv", TESTSRC + SINE + ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=none",
                                        "-c:a", "aac", "-metadata:s:a", "language=fra"], "libx265"),
    ("vp9_opus.webm", TESTSRC + SINE + ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8",
                                         "-c:a", "libopus"], "libvpx-vp9"),
    ("av1.mkv", ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10:duration=1", "-c:v", "libaom-av1",
                 "-cpu-used", "8", "-row-mt", "1"], "libaom-av1"),
    ("mpeg2_mp2.ts", TESTSRC + SINE + ["-c:v", "mpeg2video", "-c:a", "mp2"], "mpeg2video"),
    ("mpeg4_mp3.avi", TESTSRC + SINE + ["-c:v", "mpeg4", "-c:a", "libmp3lame"], "mpeg4"),
    ("hdr10_pq.mp4", TESTSRC + ["-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le",
                                "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc",
                                "-x265-params", "log-level=none:hdr10=1:master-display=G(13250,34500)B(7500,3000)"
                                "R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400",
                                "-tag:v", "hvc1"], "libx265"),
    ("anamorphic.mp4", ["-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25:duration=1", "-vf", "setsar=16/15",
                        "-c:v", "libx264", "-preset", "ultrafast"], "libx264"),
    ("odd_321x241.mkv", ["-f", "lavfi", "-i", "testsrc2=size=321x241:rate=25:duration=1", "-c:v", "libx264",
                         "-preset", "ultrafast", "-pix_fmt", "yuv444p"], "libx264"),
    ("interlaced.ts", ["-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25:duration=1", "-c:v", "mpeg2video",
                       "-flags", "+ilme+ildct", "-top", "1", "-field_order", "tt"], "mpeg2video"),
    ("bt709_tv.mp4", TESTSRC + ["-c:v", "libx264", "-preset", "ultrafast", "-color_primaries", "bt709",
                                "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv"], "libx264"),
    ("audio.mp3", SINE + ["-c:a", "libmp3lame", "-ac", "2"], "libmp3lame"),
    ("audio.m4a", SINE + ["-c:a", "aac", "-ac", "2"], "aac"),
    ("audio.opus", SINE + ["-c:a", "libopus"], "libopus"),
    ("audio_51.flac", ["-f", "lavfi", "-i", "sine=duration=1", "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0",
                       "-c:a", "flac"], "flac"),
    ("still.jpg", ["-f", "lavfi", "-i", "testsrc2=size=640x480", "-frames:v", "1", "-update", "1"], "mjpeg"),
    ("still.png", ["-f", "lavfi", "-i", "testsrc2=size=300x200", "-frames:v", "1", "-update", "1"], "png"),
    ("still.webp", ["-f", "lavfi", "-i", "testsrc2=size=256x256", "-frames:v", "1", "-c:v", "libwebp"], "libwebp"),
]


def build():
    """Generates every entry whose encoder exists; returns {name: path}."""
    files = {}
    for name, args, encoder in ENTRIES:
        if encoder and not has_encoder(encoder):
            print(f"skipping {name}: encoder {encoder} not available")
            continue
        files[name] = media(name, args)
    # Phone video: the display matrix is only written on a stream copy (an encode drops the tag).
    if "h264_aac.mp4" in files:
        for degrees in (90, 180, 270):
            name = f"rotate{degrees}.mp4"
            files[name] = media(name, ["-i", files["h264_aac.mp4"], "-c", "copy",
                                       "-metadata:s:v:0", f"rotate={degrees}"])
    # Audio with embedded cover art: the cover is an attached-picture video stream.
    if "audio.mp3" in files and "still.png" in files:
        files["cover_art.mp3"] = media("cover_art.mp3", [
            "-i", files["audio.mp3"], "-i", files["still.png"], "-map", "0:a", "-map", "1:v", "-c", "copy",
            "-id3v2_version", "3", "-disposition:v:0", "attached_pic"])
    return files


def path(name):
    return os.path.join(CORPUS, name)
