#!/bin/bash
# scripts/calibrate_sigma.sh: recalibrate a variance network on images made the way users make them
# (docs/uncertainty.md, "Recalibration through the deployment path").
#
# The calibration slab of the training configs (ch2 z -10..10 mm, k 62..82; never trained on,
# never used for validation) is simulated by `mrpipe simulate` (8 coils) at three noise levels
# spanning the training range, reconstructed by `mrpipe recon` at 4x and 8x with random and
# equispaced fastMRI masks, many mask draws each (seeds 100.., not the evaluation's 0..3; the draw
# moves a volume's coverage more than anything else: 76-95 % at nominal 90 % for cs-l1 4x random
# over 4 draws), the noise level cycling with the draw, with the network's SD map; `mrpipe
# calibrate` then fits the scales per acceleration, mask kind, relative noise level and mask
# difficulty (the images carry mrpipe_noise_sd and mrpipe_mask_difficulty, written by recon), and
# per slice line fill. The same slab of ch2bet (Colin27 brain-extracted: the slab is held out of
# training in all three Colin27 volumes) is simulated too: brain-only images fill less of each
# phase-encode line, which is what lets calibrate fit the line-fill factor (docs/uncertainty.md,
# "Line fill").
# The images stay in WORKDIR (a new /tmp/mrpipe-calib.* when not given; the script prints it):
# delete it when done.
#
# usage: scripts/calibrate_sigma.sh KIND NETWORK OUT [WORKDIR]
#   KIND: zf | sense | cs-l1 | cs-tv (recon --method M --uncertainty model) | sense-bootstrap |
#         cs-l1-bootstrap | cs-tv-bootstrap (--uncertainty bootstrap) | artefact (models/artefact.h5
#         on zf and cs-l1 images made with their own SD maps, recon --uncertainty model: denoise
#         --accel R; calibrate also fits the input-SD weights of a network that has none; the
#         shipped artefact network is session 8's, calibrated on ch2 alone before the line-fill
#         factor existed: recalibrated with ch2bet and line fill it measured worse on held-out
#         data, docs/uncertainty.md "Line fill and a second calibration volume") |
#         artefact-bootstrap (the same images with denoise --uncertainty bootstrap: calibrate fits
#         the input-SD and bootstrap weights jointly; models/artefact_sigma_bootstrap.h5 is this
#         run from the training calibration, /tmp/cal/artefact_sigma.orig.h5 in session 10).
#         The artefact kinds run calibrate with --no-line-fill: with line fill, per input method
#         or not, cs-l1 inputs on inia19 under-covered (docs/uncertainty.md, "The artefact
#         model's bootstrap")
# env: MRPIPE (build/mrpipe), SEEDS (100..115: 16 draws per acceleration and mask kind),
#      NOISES ("0.002 0.0063 0.02"), SLICES (the slab's middle 12, "66:78"), SOURCES (the
#      mricron templates to cut the slab from, "ch2 ch2bet"), SEEDS2 (the draws of the sources
#      after the first: the first 8 of SEEDS)
set -euo pipefail
ROOT=${MRPIPE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
MRPIPE=${MRPIPE:-$ROOT/build/mrpipe}
KIND=$1 NET=$(realpath "$2") OUT=$3
WORK=${4:-$(mktemp -d /tmp/mrpipe-calib.XXXXXX)}
SEEDS=${SEEDS:-$(seq 100 115)}
SLICES=${SLICES:-66:78}
NOISES=${NOISES:-"0.002 0.0063 0.02"}
SOURCES=${SOURCES:-"ch2 ch2bet"}
SEEDS2=${SEEDS2:-$(echo $SEEDS | tr ' ' '\n' | head -8)}
mkdir -p "$WORK"
LIST=$WORK/images.csv
echo "reference,image,uncertainty,accel,mask,method,input_uncertainty,bootstrap" > "$LIST"
case $KIND in
cs-l1 | sense | cs-tv | zf) METHOD=$KIND UQ=model ;;
sense-bootstrap | cs-l1-bootstrap | cs-tv-bootstrap) METHOD=${KIND%-bootstrap} UQ=bootstrap ;;
artefact) METHOD= UQ=model ;;
artefact-bootstrap) METHOD= UQ=bootstrap ;;
*) echo "calibrate_sigma.sh: KIND: expected zf, sense, cs-l1, cs-tv, METHOD-bootstrap, artefact or artefact-bootstrap, found '$KIND'" >&2
   exit 2 ;;
esac
NZ=($NOISES)
for src in $SOURCES; do
    # ch2's files keep their names of before there were two sources (a work dir is reused)
    [ "$src" = ch2 ] && pre= || pre=${src}_
    for nz in "${NZ[@]}"; do
        k=$WORK/${pre}k_$nz.h5
        [ -f "$k" ] || "$MRPIPE" -q simulate --input "/usr/share/mricron/templates/$src.nii.gz" \
            --output "$k" --slices "$SLICES" --coils 8 --noise "$nz" --seed 11
    done
    i=0
    [ "$src" = "${SOURCES%% *}" ] && seeds=$SEEDS || seeds=$SEEDS2
    for s in $seeds; do
        nz=${NZ[$((i % ${#NZ[@]}))]}
        i=$((i + 1))
        k=$WORK/${pre}k_$nz.h5
        # 8x: fastMRI's centre fraction 0.04 leaves 7 of 181 lines, too few for ESPIRiT
        for acc in "4 0.08" "8 0.08"; do
            set -- $acc
            R=$1 CF=$2
            for mk in random equispaced; do
                mask=(--mask "$mk" --accel "$R" --center-fraction "$CF" --seed "$s")
                tag=${pre}${nz}_${R}x_${mk}_$s
                # an image already there is complete (outputs are renamed when written): kept
                if [ -z "$METHOD" ]; then
                    for in_m in zf cs-l1; do
                        img=$WORK/${in_m}_$tag.h5
                        # the input's own SD map (its method's variance network): calibrate fits
                        # the weight of the artefact SD's combination with it per input method
                        [ -f "$img" ] || "$MRPIPE" -q recon --input "$k" --output "$img" \
                            --method "$in_m" "${mask[@]}" --uncertainty model
                        out=$WORK/art_${in_m}_$tag.h5
                        [ "$UQ" = model ] || out=$WORK/art_${in_m}_${UQ}_$tag.h5
                        [ -f "$out" ] || "$MRPIPE" -q denoise --input "$img" --output "$out" \
                            --model "$ROOT/models/artefact.h5" --uncertainty "$UQ" \
                            --uncertainty-model "$NET" --accel "$R"
                        # with the bootstrap: its map, for calibrate's bootstrap weights
                        [ "$UQ" = model ] && b= || b=$out:bootstrap_sd
                        echo "$k:reconstruction_rss,$out,,$R,$mk,$in_m,$img:uncertainty,$b" >> "$LIST"
                    done
                else
                    out=$WORK/${METHOD}_${UQ}_$tag.h5
                    [ -f "$out" ] || "$MRPIPE" -q recon --input "$k" --output "$out" \
                        --method "$METHOD" "${mask[@]}" --uncertainty "$UQ" --uncertainty-model "$NET"
                    echo "$k:reconstruction_rss,$out,,$R,$mk,$METHOD" >> "$LIST"
                fi
            done
        done
    done
done
SEEDS1=($SEEDS)
[ -z "$METHOD" ] && NOFILL=(--no-line-fill) || NOFILL=()
"$MRPIPE" calibrate "${NOFILL[@]}" --model "$NET" --list "$LIST" --output "$OUT" --source "scripts/calibrate_sigma.sh $KIND: \
$SOURCES slices $SLICES, 8 coils, noise $NOISES, 4x and 8x (centre 0.08), random and equispaced, mask seeds \
${SEEDS1[0]}..${SEEDS1[${#SEEDS1[@]}-1]}$([ "$SOURCES" = "${SOURCES%% *}" ] || echo " (later sources: $(echo $SEEDS2 | tr ' ' ','))")${NOFILL:+, no line fill}"
echo "calibrate_sigma.sh: wrote $OUT; the $(($(wc -l < "$LIST") - 1)) calibration images are in $WORK (delete it when done)" >&2
