#!/usr/bin/python3
"""A real RTSP camera (demo and tests): serves a video file as H.264 over RTSP, looping, at native fps.

Run with Debian's ``/usr/bin/python3`` (needs python3-gi + gir1.2-gst-rtsp-server-1.0)::

    /usr/bin/python3 ops/cameras/rtsp_server.py --port 8554 --path /cam --file vtest.avi

A producer pipeline decodes the file, paced by the clock (``sync=true``) and loops
it by seeking back to 0 on EOS; it feeds an ``intervideosink``. Each RTSP client is
served from ``intervideosrc`` (a live source at the file's frame rate), encoded with
x264 (zerolatency, a key frame every second). So the server behaves like a camera:
it streams at its native rate no matter how fast a client reads, and never "ends".
Prints ``READY rtsp://127.0.0.1:PORT/PATH`` on stdout once listening.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/cam")
    ap.add_argument("--file", required=True)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--height", type=int, default=576)
    ap.add_argument("--bitrate", type=int, default=1500, help="kbit/s")
    args = ap.parse_args()

    Gst.init(None)
    channel = f"cam{args.port}"
    producer = Gst.parse_launch(
        f'filesrc location="{args.file}" ! decodebin ! videoconvert ! videoscale ! videorate ! '
        f"video/x-raw,format=I420,width={args.width},height={args.height},framerate={args.fps}/1 ! "
        f"intervideosink channel={channel} sync=true"
    )
    loop = GLib.MainLoop()

    def on_bus(_bus, msg):
        if msg.type == Gst.MessageType.EOS:
            producer.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print(f"producer error: {err} {dbg}", file=sys.stderr, flush=True)
            loop.quit()
        return True

    bus = producer.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_bus)
    producer.set_state(Gst.State.PLAYING)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( intervideosrc channel={channel} timeout=18446744073709551615 ! "
        f"video/x-raw,format=I420,width={args.width},height={args.height},framerate={args.fps}/1 ! "
        f"videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={args.bitrate} "
        f"key-int-max={args.fps} ! video/x-h264,profile=baseline ! "
        f"rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 2

    def stop(*_a):
        loop.quit()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    GLib.timeout_add(200, lambda: True)  # let Python signal handlers run
    print(f"READY rtsp://127.0.0.1:{args.port}{args.path}", flush=True)
    loop.run()
    producer.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
