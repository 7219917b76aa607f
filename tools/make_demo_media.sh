#!/usr/bin/env bash
# Makes a short demo clip: two spoken questions (espeak-ng, two voices) between silences, muxed with a
# moving test pattern (GStreamer videotestsrc) into WebM. assets/demo is this clip recorded by
#   tools/make_demo_media.sh /tmp/demo.webm
#   build/app/conflux record assets/demo --model MODEL --media /tmp/demo.webm --speed max --budget 70
# usage: tools/make_demo_media.sh OUT.webm
set -euo pipefail
out=${1:?usage: make_demo_media.sh OUT.webm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
espeak-ng -v en-us -s 150 -w "$tmp/q1.wav" "Hello. What do you see in front of you?"
espeak-ng -v en-gb -s 140 -w "$tmp/q2.wav" "How many shapes are there?"
sox -n -r 22050 -c 1 "$tmp/sil.wav" trim 0 1.2
sox "$tmp/sil.wav" "$tmp/q1.wav" "$tmp/sil.wav" "$tmp/sil.wav" "$tmp/q2.wav" "$tmp/sil.wav" "$tmp/sil.wav" "$tmp/speech.wav"
seconds=$(soxi -D "$tmp/speech.wav")
frames=$(awk -v s="$seconds" 'BEGIN { print int(s * 10) + 1 }')  # 10 fps camera, covering the audio
gst-launch-1.0 -q webmmux name=mux ! filesink location="$out" \
  filesrc location="$tmp/speech.wav" ! wavparse ! audioconvert ! audioresample ! vorbisenc ! mux. \
  videotestsrc pattern=ball num-buffers="$frames" ! video/x-raw,width=640,height=480,framerate=10/1 ! vp8enc deadline=1 ! mux.
