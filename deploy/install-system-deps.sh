#!/usr/bin/env bash
# System packages EdgeSight's servers, cameras and tests need (Debian 12). Idempotent; skips what is present.
#   mosquitto, mosquitto-clients   MQTT broker + independent clients (control plane)
#   haproxy                        TLS in front of the embedded Kafka broker (`cloud-ops stack up`, secure by default)
#   ffmpeg                         HTTP MJPEG test camera, H.264 encoding
#   opencv-doc                     real sample video (vtest.avi) for tests and the demo
#   gstreamer RTSP server + gi     RTSP test camera (run with Debian's /usr/bin/python3)
#   chromium, chromium-driver      headless browser for the test of `edge-agent tui --web` (tests/tui)
#   kubernetes-client              kubectl 1.20 for `kubectl kustomize` (tests/test_deploy_k8s.py), unless a kubectl is present
set -euo pipefail
PKGS=(mosquitto mosquitto-clients haproxy ffmpeg opencv-doc python3-gi gir1.2-gst-rtsp-server-1.0
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad
      gstreamer1.0-libav gstreamer1.0-tools chromium chromium-driver)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Another package's kubectl (e.g. Google Cloud SDK's) would conflict with kubernetes-client over /usr/bin/kubectl.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# The distribution's mosquitto service is not ours: tests and the stack start their own on chosen ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  $SUDO systemctl disable --now mosquitto || true
fi
# Likewise the distribution's haproxy service: the secure stack runs its own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet haproxy 2>/dev/null; then
  $SUDO systemctl disable --now haproxy || true
fi
