#!/usr/bin/env bash
# install-deps.sh: install the Debian packages mrpipe needs that are missing (root, apt-get).
#   scripts/install-deps.sh          build + run-time packages and the demo data
#   scripts/install-deps.sh --test   also the test oracles (BART, ISMRMRD tools, numpy/h5py/skimage/nibabel)
set -euo pipefail
build_pkgs=(build-essential cmake pkg-config libfftw3-dev libhdf5-dev libopenblas-dev libcunit1-dev
            libdcmtk-dev libpng-dev libyaml-dev libismrmrd-dev libxml2-dev zlib1g-dev mricron-data)
test_pkgs=(bart ismrmrd-tools python3-numpy python3-h5py python3-skimage python3-nibabel hdf5-tools libxml2-utils ismrmrd-schema time bc python3-pydicom dicom3tools dcmtk orthanc iproute2 chromium snakemake slurm-wlm munge)
pkgs=("${build_pkgs[@]}")
[ "${1:-}" = "--test" ] && pkgs+=("${test_pkgs[@]}")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "mrpipe: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
