"""Thumbnails and storyboards against ffmpeg/ffprobe as the oracle, on small generated inputs.

Pixel values are read by decoding our outputs with ffmpeg to raw rgb24, so what is checked is what any
viewer would show: orientation (display matrix and EXIF), square pixels, colour matrix and range, HDR tone
mapping, `best` avoiding black, storyboard geometry and WebVTT coordinates, every input kind, hostile
inputs refused cleanly, and the job operations.
"""
import json
import os
import struct
import subprocess
import zlib

from mwtest import check, ffmpeg, ffprobe, finish, fresh_dir, has_encoder, media, run, CORPUS

OUT = fresh_dir("thumbnail")
W, H = 128, 96
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def decode_rgb(path, pix_fmt="rgb24"):
    """(width, height, bytes) of the first picture of path as decoded by ffmpeg, without autorotation."""
    info = ffprobe(path)["streams"][0]
    data = subprocess.run(["ffmpeg", "-v", "error", "-noautorotate", "-i", path, "-frames:v", "1", "-f", "rawvideo",
                           "-pix_fmt", pix_fmt, "-"], capture_output=True, check=True, timeout=60).stdout
    return info["width"], info["height"], data


def pixel(image, x, y, channels=3):
    w, _, data = image
    i = (y * w + x) * channels
    return tuple(data[i:i + channels])


def near(a, b, tol):
    return all(abs(p - q) <= tol for p, q in zip(a, b))


def mean(image):
    data = image[2]
    return sum(data) / len(data)


def corners(image):
    w, h, _ = image
    return [pixel(image, w // 6, h // 6), pixel(image, w - 1 - w // 6, h // 6),
            pixel(image, w - 1 - w // 6, h - 1 - h // 6), pixel(image, w // 6, h - 1 - h // 6)]


def thumbnail(args, rc=0):
    proc = run(["thumbnail"] + list(args), timeout=120)
    check(proc.returncode == rc, f"thumbnail {args}: exit {proc.returncode}, expected {rc}: {proc.stderr[-800:]}")
    try:
        return json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        check(False, f"thumbnail {args}: stdout is not one JSON object: {proc.stdout[:300]}")
        return {}


def quad_raw():
    """A picture whose corners are red (top left), green (top right), white (bottom right), blue (bottom left)."""
    path = os.path.join(CORPUS, "quad.rgb")
    if not os.path.exists(path):
        buf = bytearray()
        for y in range(H):
            for x in range(W):
                top, left = y < H // 2, x < W // 2
                buf += bytes(RED if top and left else GREEN if top else BLUE if left else WHITE)
        os.makedirs(CORPUS, exist_ok=True)
        with open(path, "wb") as f:
            f.write(buf)
    return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-i", path]


def test_orientation():
    base = media("quad.mp4", quad_raw() + ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0", "-g", "1"])
    source = [RED, GREEN, WHITE, BLUE]   # clockwise from top left
    for rotation in (0, 90, 180, 270):
        clip = media(f"quad-rot{rotation}.mp4", ["-i", base, "-c", "copy", "-metadata:s:v", f"rotate={rotation}"])
        side = [s for s in ffprobe(clip)["streams"][0].get("side_data_list", []) if "rotation" in s]
        check(bool(side) == bool(rotation), f"ffprobe sees no display matrix in {clip}")
        # ffprobe gives the matrix's counter-clockwise angle; the picture is shown turned clockwise by its
        # negation (ffmpeg 5.1's "rotate" tag writer and readers disagree in sign, so read it back).
        clockwise = -side[0]["rotation"] % 360 if side else 0
        check(clockwise in (90, 180, 270) if rotation else clockwise == 0, f"{clip}: rotation {side}")
        out = os.path.join(OUT, f"rot{rotation}.png")
        thumbnail([clip, "-o", out, "--at", "0", "--select", "exact"])
        image = decode_rgb(out)
        quarter = clockwise // 90
        expected = source[-quarter:] + source[:-quarter] if quarter else source
        size = (H, W) if clockwise in (90, 270) else (W, H)
        check(image[:2] == size, f"rotation {rotation}: size {image[:2]}, expected {size}")
        for got, want, name in zip(corners(image), expected, ("top left", "top right", "bottom right", "bottom left")):
            check(near(got, want, 40), f"rotation {rotation}: {name} is {got}, expected {want}")
        # ffmpeg's own autorotation is the oracle for the direction.
        data = subprocess.run(["ffmpeg", "-v", "error", "-i", clip, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt",
                               "rgb24", "-"], capture_output=True, check=True).stdout
        oracle = (size[0], size[1], data)
        check(all(near(a, b, 40) for a, b in zip(corners(image), corners(oracle))),
              f"rotation {rotation}: corners differ from ffmpeg's autorotation {corners(oracle)}")


def patched_matrix(base, name, a, b, c, d):
    """base with its tkhd display matrix set to [a b; c d] (16.16): ffmpeg 5.1's CLI cannot write mirrors."""
    path = os.path.join(CORPUS, name)
    if not os.path.exists(path):
        with open(base, "rb") as f:
            data = bytearray(f.read())
        box = data.find(b"tkhd") - 4
        assert data[box + 8] == 0, "tkhd version 0 expected"
        struct.pack_into(">9i", data, box + 48, a, b, 0, c, d, 0, 0, 0, 1 << 30)
        with open(path, "wb") as f:
            f.write(data)
    return path


def displayed_corners(a, b, c, d, source):
    """Where a display matrix puts the source's corners, by its definition (ISO/IEC 14496-12: a point (x, y)
    is shown at (a x + c y, b x + d y), y downwards): the colours at the shown top left, top right, bottom
    right, bottom left. source lists the source's corners in that order."""
    shown = {}
    for (x, y), colour in zip(((-1, -1), (1, -1), (1, 1), (-1, 1)), source):
        shown[(a * x + c * y > 0, b * x + d * y > 0)] = colour
    return [shown[(False, False)], shown[(True, False)], shown[(True, True)], shown[(False, True)]]


def test_all_orientations():
    """The eight display matrices (four turns, each with and without a mirror) against the matrix's own
    definition: the poster's corners, and the probe's rotation and hflip (hflip first, then the turn)."""
    base = media("quad.mp4", [])
    raw = quad_raw()
    second = media("quad-1s.mp4", raw[:-2] + ["-stream_loop", "24"] + raw[-2:] +
                   ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0", "-r", "25"])
    source = [RED, GREEN, WHITE, BLUE]
    for a, b, c, d in ((1, 0, 0, 1), (0, 1, -1, 0), (-1, 0, 0, -1), (0, -1, 1, 0),
                       (-1, 0, 0, 1), (1, 0, 0, -1), (0, 1, 1, 0), (0, -1, -1, 0)):
        name = f"matrix{a}{b}{c}{d}".replace("-1", "m")
        clip = patched_matrix(base, f"quad-{name}.mp4", a << 16, b << 16, c << 16, d << 16)
        expected = displayed_corners(a, b, c, d, source)
        out = os.path.join(OUT, f"{name}.png")
        thumbnail([clip, "-o", out, "--at", "0", "--select", "exact"])
        image = decode_rgb(out)
        got = corners(image)
        size = (H, W) if a == 0 else (W, H)
        check(image[:2] == size and all(near(g, w, 40) for g, w in zip(got, expected)),
              f"{name}: poster {image[:2]} with corners {got}, expected {size} {expected}")
        proc = run(["probe", clip], timeout=60)
        stream = json.loads(proc.stdout)["streams"][0] if proc.returncode == 0 else {}
        mirrored = [source[1], source[0], source[3], source[2]] if stream.get("hflip") else source
        quarter = stream.get("rotation", 0) // 90
        turned = mirrored[-quarter:] + mirrored[:-quarter] if quarter else mirrored
        check(turned == expected, f"{name}: probe says rotation {stream.get('rotation')} hflip "
                                  f"{stream.get('hflip')}, which shows {turned}, expected {expected}")
        if a == 0:
            # A rendition is upright in its pixels, and it is made by the same filter as every picture.
            moving = patched_matrix(second, f"quad-1s-{name}.mp4", a << 16, b << 16, c << 16, d << 16)
            folder = os.path.join(OUT, f"transcode-{name}")
            proc = run(["transcode", moving, "-o", folder, "--renditions", "96", "--no-remux"], timeout=120)
            renditions = [o["path"] for o in json.loads(proc.stdout or "{}").get("outputs", []) if o.get("height")]
            check(proc.returncode == 0 and renditions, f"{name}: transcode: {proc.stderr[-300:]}")
            if renditions:
                rendition = decode_rgb(os.path.join(folder, renditions[0]))
                check(rendition[0] < rendition[1] and all(near(g, w, 60) for g, w in zip(corners(rendition), expected)),
                      f"{name}: rendition {rendition[:2]} with corners {corners(rendition)}, expected {expected}")


def exif_jpeg(orientation):
    """quad.jpg with an EXIF APP1 segment carrying Orientation."""
    plain = media("quad.jpg", quad_raw() + ["-q:v", "2"])
    path = os.path.join(CORPUS, f"quad-exif{orientation}.jpg")
    if not os.path.exists(path):
        tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) \
            + struct.pack(">I", 0)
        payload = b"Exif\x00\x00" + tiff
        with open(plain, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:])
    return path


# EXIF Orientation values as the display matrices that mean the same (TIFF 6.0 / Exif 2.32, tag 0x0112):
# 2 mirrors, 4 flips, 5 transposes, 7 transverses, 6 and 8 turn 90 and 270 clockwise.
EXIF_MATRICES = {1: (1, 0, 0, 1), 2: (-1, 0, 0, 1), 3: (-1, 0, 0, -1), 4: (1, 0, 0, -1), 5: (0, 1, 1, 0),
                 6: (0, 1, -1, 0), 7: (0, -1, -1, 0), 8: (0, -1, 1, 0)}


def test_exif_orientation():
    for orientation, matrix in EXIF_MATRICES.items():
        expected = displayed_corners(*matrix, [RED, GREEN, WHITE, BLUE])
        out = os.path.join(OUT, f"exif{orientation}.png")
        result = thumbnail([exif_jpeg(orientation), "-o", out])
        check(result.get("source") == "image", f"EXIF {orientation}: source {result.get('source')}")
        image = decode_rgb(out)
        size = (H, W) if matrix[0] == 0 else (W, H)
        check(image[:2] == size and all(near(g, w, 50) for g, w in zip(corners(image), expected)),
              f"EXIF orientation {orientation}: {image[:2]} with corners {corners(image)}, expected {size} {expected}")


def reference_frame(path, number, size=None):
    """Picture number (presentation order) of path as the ffmpeg CLI decodes it from the start, as gray bytes."""
    scale = f",scale={size[0]}:{size[1]}" if size else ""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-vf", f"select=eq(n\\,{number}){scale}",
                           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                          capture_output=True, check=True, timeout=60).stdout


def gray(path):
    return subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                          capture_output=True, check=True, timeout=60).stdout


def difference(a, b):
    return sum(abs(x - y) for x, y in zip(a, b)) / max(1, min(len(a), len(b)))


def test_raw_streams():
    """Raw H.264 and HEVC elementary streams (no container, no timestamps, keyframes each second): the
    probe finds their duration by counting pictures; the exact poster at 1.5 s is picture 37 (shown from
    1.48 s) as the ffmpeg CLI decodes it from the start, and says so; keyframe posters and storyboard
    tiles are the keyframe at or before their time."""
    for codec, ext in (("libx264", "264"), ("libx265", "265")):
        if not has_encoder(codec):
            continue
        clip = media(f"raw-4s.{ext}", ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4",
                                       "-c:v", codec, "-g", "25"] +
                     (["-x265-params", "log-level=error:keyint=25:min-keyint=25"] if codec == "libx265" else []) +
                     ["-f", "h264" if ext == "264" else "hevc"])
        proc = run(["probe", clip], timeout=60)
        info = json.loads(proc.stdout or "{}")
        duration = (info.get("format") or {}).get("duration")
        check(duration is not None and abs(duration - 4.0) <= 0.04, f"{ext}: probe duration {duration}")
        out = os.path.join(OUT, f"raw-{ext}-exact.png")
        result = thumbnail([clip, "-o", out, "--at", "1.5", "--select", "exact"])
        check(abs(result.get("time", -1) - 1.48) < 0.005, f"{ext}: exact poster at 1.5 s reports {result.get('time')}")
        check(difference(gray(out), reference_frame(clip, 37)) < 4,
              f"{ext}: the exact poster is the picture ffmpeg shows at 1.5 s")
        out = os.path.join(OUT, f"raw-{ext}-key.png")
        result = thumbnail([clip, "-o", out, "--at", "2.5", "--select", "keyframe"])
        check(result.get("time") == 2, f"{ext}: keyframe poster at 2.5 s reports {result.get('time')}")
        check(difference(gray(out), reference_frame(clip, 50)) < 4, f"{ext}: the keyframe poster is picture 50")
        folder = os.path.join(OUT, f"raw-{ext}-storyboard")
        proc = run(["storyboard", clip, "-o", folder, "--interval", "1"], timeout=120)
        board = json.loads(proc.stdout or "{}")
        check(proc.returncode == 0 and board.get("tile_count") == 4, f"{ext}: storyboard {proc.stdout[:300]}")
        if proc.returncode == 0:
            sheet = gray(board["sheets"][0]["path"])
            width = len(sheet) // 120
            for n in range(4):
                tile = bytes(sheet[y * width + n * 160 + x] for y in range(120) for x in range(160))
                check(difference(tile, reference_frame(clip, 25 * n, (160, 120))) < 5,
                      f"{ext}: storyboard tile {n} is the keyframe at {n} s")


def test_decode_time_containers():
    """AVI stores decode times only: with B-frames a keyframe shows later than it decodes. A keyframe
    poster reports the time ffprobe gives that picture (decoded in sequence), not 0."""
    clip = media("bframes-6s.avi", ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6",
                                    "-c:v", "libx264", "-g", "50", "-bf", "2"])
    frames = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "frame=best_effort_timestamp_time,key_frame",
                             "-of", "json", clip], capture_output=True, text=True, check=True, timeout=60).stdout
    keyframes = [float(f["best_effort_timestamp_time"]) for f in json.loads(frames)["frames"] if f["key_frame"]]
    check(len(keyframes) == 3, f"AVI keyframes at {keyframes}")
    for at, expected in zip((1.0, 3.0, 5.0), keyframes):
        result = thumbnail([clip, "-o", os.path.join(OUT, "avi-key.png"), "--at", str(at), "--select", "keyframe"])
        check(abs(result.get("time", -1) - expected) < 0.005,
              f"AVI keyframe poster at {at} s reports {result.get('time')}, ffprobe shows it at {expected}")


def test_transport_streams():
    """MPEG-TS seeks by bisecting bytes, which can land past the keyframe before a position: an exact
    poster must still be the picture ffmpeg shows there (decoding from the start), a keyframe poster the
    keyframe at or before it, in a TS that starts at 3600 s and in an interlaced one with one keyframe."""
    offset = media("ts-start-3600.ts", ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6",
                                        "-c:v", "libx264", "-g", "50", "-output_ts_offset", "3600", "-f", "mpegts"])
    interlaced = media("ts-interlaced-tff.ts", ["-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25:duration=4",
                                                "-vf", "tinterlace=interleave_top,fieldorder=tff", "-c:v", "libx264",
                                                "-flags", "+ildct+ilme", "-x264opts", "tff=1", "-f", "mpegts"])
    for clip, at, shown, number, keyframe in ((offset, 1.5, 1.48, 37, 0.0), (offset, 4.5, 4.48, 112, 4.0),
                                              (interlaced, 1.5, 1.44, 18, 0.0)):
        name = os.path.basename(clip)
        out = os.path.join(OUT, f"{name}-exact.png")
        result = thumbnail([clip, "-o", out, "--at", str(at), "--select", "exact"])
        check(abs(result.get("time", -1) - shown) < 0.005, f"{name}: exact poster at {at} s reports "
                                                           f"{result.get('time')}, shown from {shown}")
        if result.get("time") is not None:
            # Compared at a quarter of the width, where a field-based picture and a full one look alike.
            size = (result["outputs"][0]["width"] // 4, result["outputs"][0]["height"] // 4)
            poster = subprocess.run(["ffmpeg", "-v", "error", "-i", out, "-vf", f"scale={size[0]}:{size[1]}",
                                     "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                                    capture_output=True, check=True, timeout=60).stdout
            others = [difference(poster, reference_frame(clip, n, size)) for n in (number - 1, number, number + 1)]
            check(others[1] < 6 and others[1] < min(others[0], others[2]),
                  f"{name}: the exact poster at {at} s is picture {number} (differences {others})")
        result = thumbnail([clip, "-o", os.path.join(OUT, f"{name}-key.png"), "--at", str(at),
                            "--select", "keyframe"])
        check(result.get("time") == keyframe, f"{name}: keyframe poster at {at} s reports {result.get('time')}")
    proc = run(["storyboard", interlaced, "-o", os.path.join(OUT, "ts-interlaced-storyboard"), "--interval", "1"],
               timeout=120)
    check(proc.returncode == 0 and json.loads(proc.stdout or "{}").get("tile_count") == 4,
          f"interlaced TS storyboard: {proc.stdout[:300]}")


def flash_time(path, size=(320, 240)):
    """Timeline time (from the file's start, as ffprobe and players count) of the first white picture."""
    info = ffprobe(path, ["-show_frames", "-select_streams", "v:0"])
    start = float(info["format"].get("start_time", 0))
    times = [float(f["best_effort_timestamp_time"]) for f in info["frames"]]
    pictures = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough",
                               "-vf", f"scale={size[0]}:{size[1]}",
                               "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                              capture_output=True, check=True, timeout=60).stdout
    area = size[0] * size[1]
    for n in range(len(pictures) // area):
        if sum(pictures[n * area:(n + 1) * area:97]) / len(pictures[n * area:(n + 1) * area:97]) > 128:
            return times[n] - start
    return None


def beep_time(path):
    """Timeline time of the first loud audio sample, as the ffmpeg CLI decodes the audio from the start."""
    info = ffprobe(path)
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    start = float(audio.get("start_time", 0)) - float(info["format"].get("start_time", 0))
    samples = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:a:0", "-ac", "1", "-ar", "48000",
                              "-f", "s16le", "-"], capture_output=True, check=True, timeout=60).stdout
    loud = next((i for i in range(len(samples) // 2) if abs(struct.unpack_from("<h", samples, 2 * i)[0]) > 3000), None)
    return None if loud is None else start + loud / 48000


def test_one_timeline():
    """Times are counted from the file's start, not from the video stream's first picture: in an MKV whose
    video starts 1.5 s after its audio (and the MP4 made from it, which says so with an empty edit), the
    exact poster at a time is the picture players show then and reports its time on that timeline, a
    poster before the video starts is its first picture, a storyboard covers the file's duration (6 s,
    not the video's 4.5 s), and a rendition keeps the picture and the sound where they were relative to each other."""
    video = "color=black:size=320x240:rate=25:duration=4.5," \
            "drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='between(t,0.5,0.53)'"
    audio = "aevalsrc='if(between(t,2,2.1),sin(2*PI*1000*t),0)':s=48000:d=6"
    mkv = media("late-video.mkv", ["-f", "lavfi", "-i", audio, "-itsoffset", "1.5", "-f", "lavfi", "-i", video,
                                   "-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-g", "25", "-c:a", "aac"])
    mp4 = media("late-video-edit.mp4", ["-i", mkv, "-c", "copy"])
    for clip in (mkv, mp4):
        name = os.path.basename(clip)
        white = flash_time(clip)
        first = float(next(s for s in ffprobe(clip)["streams"] if s["codec_type"] == "video")["start_time"])
        check(white is not None and white > 1.9, f"{name}: the white picture is shown at {white} s")
        if white is None:
            continue
        out = os.path.join(OUT, f"{name}-timeline.png")
        result = thumbnail([clip, "-o", out, "--at", f"{white + 0.01:.3f}", "--select", "exact"])
        check(abs(result.get("time", -1) - white) < 0.003 and mean(decode_rgb(out)) > 200,
              f"{name}: exact poster at {white + 0.01:.3f} s: {result.get('time')}, mean {mean(decode_rgb(out))}")
        result = thumbnail([clip, "-o", out, "--at", f"{white - 0.05:.3f}", "--select", "exact"])
        check(result.get("time", 99) < white and mean(decode_rgb(out)) < 40,
              f"{name}: exact poster just before the white picture: {result.get('time')}, mean {mean(decode_rgb(out))}")
        result = thumbnail([clip, "-o", out, "--at", "0.5", "--select", "exact"])
        check(abs(result.get("time", -1) - first) < 0.003,
              f"{name}: a poster before the video starts is its first picture at {first}: {result.get('time')}")
        folder = os.path.join(OUT, f"{name}-timeline-storyboard")
        proc = run(["storyboard", clip, "-o", folder, "--interval", "2"], timeout=120)
        board = json.loads(proc.stdout or "{}")
        check(proc.returncode == 0 and board.get("tile_count") == 4, f"{name}: storyboard {proc.stdout[:300]}")
        folder = os.path.join(OUT, f"{name}-timeline-transcode")
        proc = run(["transcode", clip, "-o", folder, "--renditions", "240", "--no-remux"], timeout=300)
        rendition = os.path.join(folder, "web_240p.mp4")
        check(proc.returncode == 0 and os.path.exists(rendition), f"{name}: transcode {proc.stdout[:300]}")
        if os.path.exists(rendition):
            source_offset = white - beep_time(clip)
            output_offset = flash_time(rendition) - beep_time(rendition)
            check(abs(output_offset - source_offset) <= 0.010,
                  f"{name}: picture-to-sound offset {output_offset:.3f} s in the rendition, {source_offset:.3f} s in the source")


def test_anamorphic():
    for sar, width in (("16/15", 768), ("64/45", 1024)):
        clip = media(f"anamorphic-{sar.replace('/', '_')}.mp4",
                     ["-f", "lavfi", "-i", "testsrc2=s=720x576:d=0.4", "-vf", f"setsar={sar}", "-c:v", "libx264",
                      "-preset", "ultrafast"])
        check(ffprobe(clip)["streams"][0]["sample_aspect_ratio"] == sar.replace("/", ":"), f"{clip}: SAR not set")
        out = os.path.join(OUT, f"anamorphic-{width}.jpg")
        result = thumbnail([clip, "-o", out, "--at", "0"])
        info = ffprobe(out)["streams"][0]
        check((info["width"], info["height"]) == (width, 576), f"SAR {sar}: {info['width']}x{info['height']}")
        check(result.get("outputs", [{}])[0].get("width") == width, f"SAR {sar}: JSON says {result}")
        out = os.path.join(OUT, f"anamorphic-{width}-320.jpg")
        thumbnail([clip, "-o", out, "--at", "0", "--width", "320"])
        info = ffprobe(out)["streams"][0]
        check((info["width"], info["height"]) == (320, round(320 * 576 / width / 2) * 2),
              f"SAR {sar} at width 320: {info['width']}x{info['height']}")


def test_best_skips_black():
    clip = media("black-start.mp4", ["-f", "lavfi", "-i", "color=black:s=320x180:d=4:r=25", "-f", "lavfi",
                                      "-i", "testsrc2=s=320x180:d=4:r=25", "-filter_complex",
                                      "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]", "-c:v", "libx264", "-g", "25",
                                      "-preset", "ultrafast"])
    out = os.path.join(OUT, "black-keyframe.jpg")
    thumbnail([clip, "-o", out, "--at", "10%", "--select", "keyframe"])
    check(mean(decode_rgb(out)) < 20, "the first seconds of the black-start clip are not black: test is void")
    out = os.path.join(OUT, "black-best.jpg")
    result = thumbnail([clip, "-o", out, "--at", "10%", "--select", "best"])
    check(result.get("time", 0) >= 4.0, f"best chose t={result.get('time')} inside the black part")
    check(result.get("score", 0) > 0.35, f"best score {result.get('score')} is poor")
    check(mean(decode_rgb(out)) > 60, "best picture is dark")
    out = os.path.join(OUT, "exact.jpg")
    result = thumbnail([clip, "-o", out, "--at", "5.5", "--select", "exact"])
    check(abs(result.get("time", -1) - 5.52) < 0.05 or abs(result.get("time", -1) - 5.48) < 0.05,
          f"exact at 5.5 chose {result.get('time')}")


def test_colour_levels():
    # Solid colours through each matrix and range; the JPEG must come back at the source's RGB values.
    colour = (200, 80, 40)
    hexcolour = "0x%02X%02X%02X" % colour
    cases = [("bt709", "tv", "bt709"), ("bt601", "tv", "smpte170m"), ("bt709", "pc", "bt709"),
             ("bt601", "pc", "smpte170m")]
    for matrix, rng, tag in cases:
        for value, name in ((colour, "colour"), ((128, 128, 128), "grey")):
            c = hexcolour if name == "colour" else "0x808080"
            clip = media(f"level-{name}-{matrix}-{rng}.mp4",
                         ["-f", "lavfi", "-i", f"color=c={c}:s=160x120:d=0.2", "-vf",
                          f"format=rgb24,scale=out_color_matrix={matrix}:out_range={rng},format=yuv444p",
                          "-c:v", "libx264", "-qp", "0", "-colorspace", tag, "-color_range", rng])
            out = os.path.join(OUT, f"level-{name}-{matrix}-{rng}.png")
            thumbnail([clip, "-o", out, "--at", "0"])
            got = pixel(decode_rgb(out), 80, 60)
            check(near(got, value, 4), f"{name} through {matrix}/{rng}: got {got}, expected {value}")
            # The JPEG path (full-range BT.601 JFIF) must keep the levels as well.
            out = out[:-4] + ".jpg"
            thumbnail([clip, "-o", out, "--at", "0"])
            got = pixel(decode_rgb(out), 80, 60)
            check(near(got, value, 6), f"{name} through {matrix}/{rng} to JPEG: got {got}, expected {value}")
    # 10-bit SDR goes through the same matrix handling, without tone mapping.
    clip = media("level-colour-10bit.mp4", ["-f", "lavfi", "-i", f"color=c={hexcolour}:s=160x120:d=0.2", "-vf",
                                            "format=rgb24,scale=out_color_matrix=bt709:out_range=tv,format=yuv444p10le",
                                            "-c:v", "libx264", "-qp", "0", "-colorspace", "bt709", "-color_range", "tv"])
    out = os.path.join(OUT, "level-colour-10bit.png")
    thumbnail([clip, "-o", out, "--at", "0"])
    got = pixel(decode_rgb(out), 80, 60)
    check(near(got, colour, 4), f"10-bit BT.709: got {got}, expected {colour}")


def test_hdr():
    sdr = media("hdr-sdr.mp4", ["-f", "lavfi", "-i", "testsrc2=s=320x180:d=0.2", "-c:v", "libx264", "-pix_fmt",
                                "yuv420p"])
    try:
        hdr = media("hdr-pq.mp4", ["-f", "lavfi", "-i", "testsrc2=s=320x180:d=0.2", "-vf",
                                   "format=gbrp,zscale=tin=iec61966-2-1:min=gbr:pin=bt709:rin=full:t=smpte2084:"
                                   "p=bt2020:m=bt2020nc:r=limited:npl=100,format=yuv420p10le",
                                   "-c:v", "libx264", "-color_trc", "smpte2084", "-color_primaries", "bt2020",
                                   "-colorspace", "bt2020nc"])
    except subprocess.CalledProcessError:
        check(False, "this ffmpeg cannot make a PQ clip (no zscale filter): the HDR checks did not run")
        return
    info = ffprobe(hdr)["streams"][0]
    check(info.get("color_transfer") == "smpte2084" and info.get("pix_fmt") == "yuv420p10le", f"HDR clip: {info}")
    means = {}
    for name, clip in (("sdr", sdr), ("hdr", hdr)):
        out = os.path.join(OUT, f"hdr-{name}.png")
        thumbnail([clip, "-o", out, "--at", "0"])
        means[name] = mean(decode_rgb(out))
    naive = subprocess.run(["ffmpeg", "-v", "error", "-i", hdr, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt",
                            "rgb24", "-"], capture_output=True, check=True).stdout
    naive_mean = sum(naive) / len(naive)
    check(abs(naive_mean - means["sdr"]) > 0.18 * means["sdr"],
          f"the PQ clip without tone mapping (mean {naive_mean:.1f}) looks like the SDR poster "
          f"({means['sdr']:.1f}): test is void")
    check(abs(means["hdr"] - means["sdr"]) < 0.12 * means["sdr"],
          f"HDR poster mean {means['hdr']:.1f} is not within 12% of the SDR one {means['sdr']:.1f} "
          f"(untone-mapped: {naive_mean:.1f})")
    hlg = media("hdr-hlg.mp4", ["-f", "lavfi", "-i", "testsrc2=s=320x180:d=0.2", "-vf",
                                "format=gbrp,zscale=tin=iec61966-2-1:min=gbr:pin=bt709:rin=full:t=arib-std-b67:"
                                "p=bt2020:m=bt2020nc:r=limited:npl=1000,format=yuv420p10le",
                                "-c:v", "libx264", "-color_trc", "arib-std-b67", "-color_primaries", "bt2020",
                                "-colorspace", "bt2020nc"])
    out = os.path.join(OUT, "hdr-hlg.png")
    thumbnail([hlg, "-o", out, "--at", "0"])
    check(abs(mean(decode_rgb(out)) - means["sdr"]) < 0.25 * means["sdr"],
          f"HLG poster mean {mean(decode_rgb(out)):.1f} is far from the SDR one {means['sdr']:.1f}")


def combing(image):
    """Mean distance of each pixel from the average of the rows above and below: high for interlaced combs."""
    w, h, data = image
    grey = [sum(data[i:i + 3]) / 3 for i in range(0, len(data), 3)]
    total = sum(abs(grey[y * w + x] - (grey[(y - 1) * w + x] + grey[(y + 1) * w + x]) / 2)
                for y in range(1, h - 1) for x in range(0, w, 2))
    return total / ((h - 2) * (w // 2))


def test_interlaced():
    clip = media("interlaced.mp4", ["-f", "lavfi", "-i", "testsrc2=s=320x240:r=50:d=1,tinterlace=mode=interleave_top",
                                    "-c:v", "libx264", "-flags", "+ilme+ildct", "-x264opts", "tff=1",
                                    "-pix_fmt", "yuv420p"])
    check(ffprobe(clip)["streams"][0].get("field_order") == "tt", "interlaced clip is not flagged top field first")
    out = os.path.join(OUT, "interlaced.png")
    thumbnail([clip, "-o", out, "--at", "0.5", "--select", "exact"])
    ours = decode_rgb(out)
    check(ours[:2] == (320, 240), f"interlaced: size {ours[:2]}")
    data = subprocess.run(["ffmpeg", "-v", "error", "-ss", "0.5", "-i", clip, "-frames:v", "1", "-f", "rawvideo",
                           "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    raw = combing((320, 240, data))
    check(combing(ours) < 0.5 * raw, f"interlaced: combing {combing(ours):.2f}, woven frame {raw:.2f}")


def test_sizes_and_formats():
    clip = media("sizes.mp4", ["-f", "lavfi", "-i", "testsrc2=s=640x360:d=1", "-c:v", "libx264", "-preset",
                               "ultrafast"])
    result = thumbnail([clip, "-o", os.path.join(OUT, "multi.jpg"), "--width", "160,320,1280"])
    got = [(o["width"], o["height"]) for o in result.get("outputs", [])]
    check(got == [(160, 90), (320, 180), (640, 360)], f"several widths (no upscale): {got}")
    for o in result.get("outputs", []):
        info = ffprobe(o["path"])["streams"][0]
        check((info["width"], info["height"]) == (o["width"], o["height"]), f"{o['path']}: ffprobe disagrees")
    result = thumbnail([clip, "-o", os.path.join(OUT, "cover.webp"), "--width", "200", "--height", "200",
                        "--fit", "cover"])
    info = ffprobe(os.path.join(OUT, "cover.webp"))["streams"][0]
    check((info["width"], info["height"], info["codec_name"]) == (200, 200, "webp"), f"cover webp: {info}")
    thumbnail([clip, "-o", os.path.join(OUT, "up.png"), "--width", "1000", "--upscale"])
    check(ffprobe(os.path.join(OUT, "up.png"))["streams"][0]["width"] == 1000, "--upscale ignored")
    thumbnail([clip, "-o", os.path.join(OUT, "odd.jpg"), "--width", "333"])
    check(ffprobe(os.path.join(OUT, "odd.jpg"))["streams"][0]["width"] % 2 == 0, "JPEG width is odd")
    # Several inputs in one process, one image each in a directory.
    folder = os.path.join(OUT, "batch")
    proc = run(["thumbnail", clip, clip.replace("sizes", "hdr-sdr"), "-o", folder + "/", "--width", "160"])
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    check(proc.returncode == 0 and len(lines) == 2, f"batch: exit {proc.returncode}, {len(lines)} lines")
    check(sorted(os.listdir(folder)) == ["hdr-sdr.jpg", "sizes.jpg"], f"batch files: {os.listdir(folder)}")


def test_image_inputs():
    # PNG with alpha: kept in PNG, flattened on white in JPEG.
    png = media("alpha.png", ["-f", "lavfi", "-i", "color=c=red@0.0:s=64x64,format=rgba", "-frames:v", "1"])
    thumbnail([png, "-o", os.path.join(OUT, "alpha.png")])
    image = decode_rgb(os.path.join(OUT, "alpha.png"), "rgba")
    check(pixel(image, 10, 10, 4)[3] == 0, f"PNG alpha lost: {pixel(image, 10, 10, 4)}")
    thumbnail([png, "-o", os.path.join(OUT, "alpha.jpg")])
    check(near(pixel(decode_rgb(os.path.join(OUT, "alpha.jpg")), 10, 10), WHITE, 6), "transparent not flattened on white")
    webp = media("still.webp", quad_raw() + ["-c:v", "libwebp", "-lossless", "1", "-frames:v", "1"])
    result = thumbnail([webp, "-o", os.path.join(OUT, "webp.png")])
    check(result.get("source") == "image", f"WebP still: {result}")
    check(near(corners(decode_rgb(os.path.join(OUT, "webp.png")))[0], RED, 30), "WebP still colours")
    gif = media("anim.gif", ["-f", "lavfi", "-i", "testsrc2=s=160x90:d=2:r=10"])
    result = thumbnail([gif, "-o", os.path.join(OUT, "gif.jpg")])
    check(result.get("source") == "animation" and 0.5 <= result.get("time", -1) <= 1.5, f"animated GIF: {result}")
    cover = media("cover.mp3", ["-f", "lavfi", "-i", "sine=d=1", "-i", media("quad.png", quad_raw()),
                                "-map", "0", "-map", "1", "-c:a", "libmp3lame", "-c:v", "png",
                                "-disposition:v", "attached_pic", "-id3v2_version", "3"])
    result = thumbnail([cover, "-o", os.path.join(OUT, "cover.jpg")])
    check(result.get("source") == "cover", f"audio with cover: {result}")
    check(near(corners(decode_rgb(os.path.join(OUT, "cover.jpg")))[2], WHITE, 30), "cover colours")
    # Audio without a cover: a waveform, loud in the middle rows, background at the top and bottom.
    audio = media("plain.m4a", ["-f", "lavfi", "-i", "sine=f=220:d=2,volume=0.5", "-c:a", "aac"])
    result = thumbnail([audio, "-o", os.path.join(OUT, "wave.png"), "--width", "400"])
    check(result.get("source") == "waveform", f"audio without cover: {result}")
    image = decode_rgb(os.path.join(OUT, "wave.png"))
    check(image[:2] == (400, 100), f"waveform size {image[:2]}")
    check(sum(pixel(image, 200, 50)) > sum(pixel(image, 200, 1)) + 100, "waveform has no envelope in the middle")
    # Nothing to show at all: a clear error.
    data = os.path.join(CORPUS, "not-media.wav")
    with open(data, "wb") as f:
        f.write(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x44\xac\x00\x00\x88\x58\x01\x00"
                b"\x02\x00\x10\x00data\x00\x00\x00\x00")
    result = thumbnail([data, "-o", os.path.join(OUT, "none.jpg")], rc=1)
    check(result.get("error", {}).get("code") == "NO_PICTURE", f"audio with no samples: {result}")


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def test_hostile():
    bomb = os.path.join(CORPUS, "bomb.png")
    with open(bomb, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8000, 8000, 8, 2, 0, 0, 0)) +
                png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + png_chunk(b"IEND", b""))
    result = thumbnail([bomb, "-o", os.path.join(OUT, "bomb.jpg")], rc=1)
    check(result.get("error", {}).get("code") in ("TOO_MANY_PIXELS", "INVALID_DATA"), f"pixel bomb: {result}")
    check(not os.path.exists(os.path.join(OUT, "bomb.jpg")), "pixel bomb left an output")
    whole = media("truncate-src.mp4", ["-f", "lavfi", "-i", "testsrc2=s=320x180:d=2", "-c:v", "libx264"])
    for fraction in (0.05, 0.5):
        cut = os.path.join(OUT, f"truncated-{fraction}.mp4")
        with open(whole, "rb") as f:
            data = f.read()
        with open(cut, "wb") as f:
            f.write(data[:int(len(data) * fraction)])
        proc = run(["thumbnail", cut, "-o", os.path.join(OUT, "truncated.jpg"), "--select", "exact"], timeout=60)
        check(proc.returncode in (0, 1) and "error" in proc.stdout if proc.returncode else True,
              f"truncated {fraction}: exit {proc.returncode} {proc.stdout[:200]}")
    small = media("truncate-src.mp4", [])
    result = thumbnail([small, "-o", os.path.join(OUT, "limit.jpg"), "--max-pixels", "10000"], rc=1)
    check(result.get("error", {}).get("code") == "TOO_MANY_PIXELS", f"over --max-pixels: {result}")
    garbage = os.path.join(OUT, "garbage.mp4")
    with open(garbage, "wb") as f:
        f.write(os.urandom(4096))
    thumbnail([garbage, "-o", os.path.join(OUT, "garbage.jpg")], rc=1)


def test_storyboard():
    clip = media("story.mp4", ["-f", "lavfi", "-i", "testsrc2=s=320x180:d=10:r=25", "-c:v", "libx264", "-g", "25",
                               "-preset", "ultrafast"])
    folder = os.path.join(OUT, "story")
    proc = run(["storyboard", clip, "-o", folder, "--interval", "2", "--tile-width", "160", "--columns", "3"])
    check(proc.returncode == 0, f"storyboard: exit {proc.returncode}: {proc.stderr[-500:]}")
    info = ffprobe(os.path.join(folder, "storyboard-0.jpg"))["streams"][0]
    check((info["width"], info["height"]) == (480, 180), f"sheet size {info['width']}x{info['height']}")
    with open(os.path.join(folder, "storyboard.vtt")) as f:
        vtt = f.read()
    check(vtt.startswith("WEBVTT\n"), "VTT header")
    cues = [block.splitlines() for block in vtt.split("\n\n")[1:] if block.strip()]
    check(len(cues) == 5, f"{len(cues)} cues, expected 5")
    for i, cue in enumerate(cues):
        start = "00:00:%02d.000" % (2 * i)
        end = "00:00:%02d.000" % (2 * i + 2)
        check(cue[0] == f"{start} --> {end}", f"cue {i} time line {cue[0]!r}")
        check(cue[1] == f"storyboard-0.jpg#xywh={i % 3 * 160},{i // 3 * 90},160,90", f"cue {i}: {cue[1]!r}")
    with open(os.path.join(folder, "storyboard.json")) as f:
        index = json.load(f)
    check(index["tile_count"] == 5 and len(index["tiles"]) == 5 and index["sheets"][0]["width"] == 480,
          f"index: {index}")
    # Tiles differ (they come from different keyframes): the timecode area changes between tiles.
    sheet = decode_rgb(os.path.join(folder, "storyboard-0.jpg"))
    first = [pixel(sheet, x, y) for x in range(0, 40) for y in range(0, 12)]
    second = [pixel(sheet, 160 + x, y) for x in range(0, 40) for y in range(0, 12)]
    check(first != second, "the first two tiles are identical")
    folder = os.path.join(OUT, "story-count")
    proc = run(["storyboard", clip, "-o", folder, "--count", "12", "--columns", "5", "--rows", "2"])
    check(proc.returncode == 0, f"storyboard --count: exit {proc.returncode}")
    check(sorted(f for f in os.listdir(folder) if f.endswith(".jpg")) ==
          ["storyboard-0.jpg", "storyboard-1.jpg"], f"sheets: {os.listdir(folder)}")
    info = ffprobe(os.path.join(folder, "storyboard-1.jpg"))["streams"][0]
    check((info["width"], info["height"]) == (320, 90), f"second sheet of 2 tiles: {info['width']}x{info['height']}")


def run_job(operations, name, source=None):
    root = fresh_dir(f"thumbnail-job-{name}")
    os.makedirs(os.path.join(root, "in"))
    os.makedirs(os.path.join(root, "out"))
    os.link(source or media("story.mp4", []), os.path.join(root, "in", "clip.mp4"))
    job = os.path.join(root, "job.json")
    with open(job, "w") as f:
        json.dump({"user_id": 7, "file_info": {"path": "clip.mp4"}, "operations": operations}, f)
    proc = run(["run", job], env={"MW_INPUT_ROOT": os.path.join(root, "in"),
                                  "MW_OUTPUT_ROOT": os.path.join(root, "out")})
    return proc, json.loads(proc.stdout)["new_file"], os.path.join(root, "out")


def test_job_operations():
    proc, report, out = run_job([{"type": "storyboard", "interval": 2, "tile_width": 160, "columns": 10},
                                 {"type": "thumbnail", "at": "50%", "width": 320, "format": "jpeg", "select": "best"}],
                                "ok")
    check(proc.returncode == 0 and report["status"] == "processed", f"job: {report}")
    check(report["path"].endswith("/thumbnail.jpg"), f"primary output is {report['path']}")
    thumb = [o for o in report["outputs"] if o["type"] == "thumbnail"]
    check(len(thumb) == 1 and thumb[0]["width"] == 320 and thumb[0]["height"] == 180 and "score" in thumb[0]
          and "time" in thumb[0] and thumb[0]["bytes"] > 0, f"thumbnail output: {thumb}")
    check(os.path.getsize(os.path.join(out, thumb[0]["path"])) == thumb[0]["bytes"], "bytes differ from the file")
    story = [o for o in report["outputs"] if o["type"] == "storyboard"]
    check(len(story) == 1 and story[0]["tile_count"] == 5, f"storyboard output: {story}")
    check(not [f for _, _, files in os.walk(out) for f in files if ".tmp" in f or (f.startswith(".") and f not in (".mw-job", ".mw-result.json"))],
          "temporary files left behind")
    for params, field in (({"type": "thumbnail", "width": 0}, "thumbnail.width"),
                          ({"type": "thumbnail", "select": "random"}, "thumbnail.select"),
                          ({"type": "thumbnail", "at": "150%"}, "thumbnail.at"),
                          ({"type": "thumbnail", "format": "gif"}, "thumbnail.format"),
                          ({"type": "storyboard", "interval": -1}, "storyboard.interval"),
                          ({"type": "storyboard", "columns": "ten"}, "storyboard.columns")):
        proc, report, _ = run_job([params], "bad")
        error = report.get("error", {})
        check(proc.returncode == 1 and error.get("code") == "INVALID_MESSAGE" and field in error.get("message", ""),
              f"{params}: {error}")
    proc, report, out = run_job([{"type": "thumbnail", "select": "exact", "at": 3, "format": "webp",
                                  "sizes": [{"width": 160}, {"width": 64, "height": 64, "fit": "cover"}]}], "sizes")
    got = sorted((os.path.basename(o["path"]), o["width"], o["height"]) for o in report.get("outputs", []))
    check(got == [("thumbnail-1.webp", 64, 64), ("thumbnail.webp", 160, 90)], f"job sizes: {got}")
    check(all(abs(o["time"] - 3.0) < 0.05 for o in report.get("outputs", [])), f"job exact time: {report}")
    proc, report, _ = run_job([{"type": "storyboard"}], "audio", source=media("plain.m4a", []))
    check(proc.returncode == 1 and report.get("error", {}).get("code") == "NO_PICTURE",
          f"storyboard of audio: {report.get('error')}")
    # With other work to do, a storyboard of audio is skipped and said so; the job succeeds.
    proc, report, _ = run_job([{"type": "thumbnail"}, {"type": "storyboard"}], "audio-mixed",
                              source=media("plain.m4a", []))
    check(proc.returncode == 0 and report.get("skipped") == [{"type": "storyboard", "reason": "the input has no video stream"}]
          and [o["type"] for o in report.get("outputs", [])] == ["thumbnail"], f"storyboard skipped for audio: {report}")


for test in (test_orientation, test_all_orientations, test_raw_streams, test_decode_time_containers, test_transport_streams,
             test_one_timeline,
             test_exif_orientation, test_anamorphic, test_best_skips_black, test_colour_levels, test_hdr,
             test_interlaced, test_sizes_and_formats, test_image_inputs, test_hostile, test_storyboard,
             test_job_operations):
    print(f"== {test.__name__}", flush=True)
    test()
finish()
