#!/bin/sh
# Fetch the training corpus of the bundled default model from Debian packages and unpack it
# into .devcarry/ (git-ignored). Needs apt-get (Debian/Ubuntu) and dpkg; no root needed for
# `apt-get download`, but `apt-get update` must have run once.
#
#   sh tools/train/get_corpus.sh && python3 tools/train/build_corpus.py
#
# Packages (all English text; licenses in each package's /usr/share/doc/*/copyright):
#   bible-kjv-text  King James Bible text (public domain, 1611)      [bible-kjv: the `bible`
#                   program, GPL-2+, is only *run* here to decompress the text; it is not shipped]
#   fortunes, fortunes-min  BSD fortune cookie files (BSD licence)
#   jargon-text     The Jargon File 4.4.7 (public domain)
#   dict-devil      The Devil's Dictionary, Ambrose Bierce (public domain)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
dc="$root/.devcarry"
mkdir -p "$dc/debs" "$dc/pkg"
cd "$dc/debs"
apt-get download bible-kjv-text bible-kjv fortunes fortunes-min jargon-text dict-devil
for f in *.deb; do
  name=${f%%_*}
  mkdir -p "$dc/pkg/$name"
  dpkg -x "$f" "$dc/pkg/$name"
done
cd "$dc/pkg"
# Decompress the whole KJV text (one verse per line, "Ge1:1 In the beginning ...").
./bible-kjv/usr/bin/bible -f -p bible-kjv-text/usr/lib "gen1:1-rev22:21" > "$dc/kjv_raw.txt"
zcat jargon-text/usr/share/doc/jargon-text/jargon.txt.gz > "$dc/jargon.txt"
zcat dict-devil/usr/share/dictd/devil.dict.dz > "$dc/devil.txt"
ls -l "$dc"/*.txt
