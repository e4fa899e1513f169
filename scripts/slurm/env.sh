# shellcheck shell=bash
# Local one-node SLURM cluster for hdsgd tests: environment. Source it, do not run it:
#
#     source scripts/slurm/env.sh
#
# Everything the cluster uses lives under HDSGD_SLURM_DIR (default /var/lib/hdsgd-slurm): its
# own slurm.conf, state, spool, logs, pid files and its own munged socket. The system files
# (/etc/slurm/slurm.conf, /run/munge) are never written, so a real SLURM installation on the
# same machine is left alone. SLURM commands (sbatch, squeue, scontrol, scancel, sinfo) find
# this cluster only through SLURM_CONF, which is why callers must source this file (or set
# SLURM_CONF themselves) before calling them.

export HDSGD_SLURM_DIR="${HDSGD_SLURM_DIR:-/var/lib/hdsgd-slurm}"
export SLURM_CONF="$HDSGD_SLURM_DIR/slurm.conf"
# Ports of this private cluster; not SLURM's defaults (6817/6818), so that they cannot clash
# with a real slurmctld/slurmd running on the same machine.
export HDSGD_SLURM_CTLD_PORT="${HDSGD_SLURM_CTLD_PORT:-16817}"
export HDSGD_SLURM_SLURMD_PORT="${HDSGD_SLURM_SLURMD_PORT:-16818}"
# The one partition (the default one, so sbatch needs no --partition).
export HDSGD_SLURM_PARTITION="${HDSGD_SLURM_PARTITION:-local}"
# Bounded waits, seconds.
export HDSGD_SLURM_START_TIMEOUT="${HDSGD_SLURM_START_TIMEOUT:-60}"
export HDSGD_SLURM_STOP_TIMEOUT="${HDSGD_SLURM_STOP_TIMEOUT:-30}"
# slurmctld/slurmd/sbatch live in /usr/sbin and /usr/bin; make sure both are on PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin" ;; esac
