#!/bin/sh
# The fastest honest stand-in for compare_models.py: write a valid comparison_metrics.csv into
# --output_dir and exit 0. A job this short ends within one filesystem timestamp tick of its launch.
while [ $# -gt 0 ]; do
    [ "$1" = --output_dir ] && out=$2
    shift
done
printf 'model,metric,amplitude,phase,value\nPtychoPINN,ms_ssim,0.9,0.8,\nBaseline,ms_ssim,0.8,0.7,\nPtyChi,ms_ssim,0.7,0.6,\n' \
    > "$out/comparison_metrics.csv"
