"""A local RTSP test stream for the capture tests: GStreamer's RTSP server (Debian packages
gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-base/-good), run with the system
python3 (``/usr/bin/python3``, where ``gi`` lives), bound to 127.0.0.1.

    /usr/bin/python3 rtsp_test_server.py PORT [USER PASSWORD]

serves ``rtsp://127.0.0.1:PORT/live``: a 320x240 test pattern as MJPEG over RTP at 5 fps; with
USER and PASSWORD, only to clients that authenticate (Basic). Prints "ready" once it listens.
"""

import sys

import gi  # type: ignore[import-not-found]  # system python3 only

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found]  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball"
    " ! video/x-raw,format=I420,width=320,height=240,framerate=5/1"
    " ! jpegenc quality=70 ! rtpjpegpay name=pay0 pt=26 )"
)


def main() -> None:
    Gst.init(None)
    port = sys.argv[1]
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    if len(sys.argv) == 4:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(sys.argv[2], sys.argv[3]), token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("user", "media.factory.access", True)
        permissions.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/live", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


main()
