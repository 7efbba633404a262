#!/bin/sh
# A swarm node's entrypoint (tests/swarm-nodes.sh): makes the container fit to
# run its own dockerd, then runs it as PID 1, with any arguments added.
#
# usage: entrypoint.sh [dockerd args...]
set -eu

# Without --privileged, Docker mounts /sys and the cgroup hierarchies
# read-only; the inner dockerd must create its own cgroups there. A plain
# remount of a cgroup fails "mount point is busy": a bind remount does not.
mount -o remount,rw /sys
for dir in /sys/fs/cgroup /sys/fs/cgroup/*; do
  if mountpoint -q "$dir"; then
    mount -o remount,bind,rw "$dir"
  fi
done

# A node that was killed and started again finds its last pid files, and
# dockerd (and its containerd) would refuse to start: "pid file found".
rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid

# The node's containers ask Docker's resolver, which forwards names it does
# not know (a service whose tasks are gone, say) to the node's resolvers.
# Here these are unreachable, and each lookup would hang for seconds; a
# host's resolver answers at once. This one answers every such name with
# NXDOMAIN.
address=$(ip -4 -o addr show eth0 | awk '{ split($4, a, "/"); print a[1]; exit }')
dnsmasq --no-resolv --no-hosts --address=/#/ --listen-address="$address" --bind-interfaces \
  --user=root --pid-file=

# /var/lib/docker is a volume, so overlay2 works there (not on the
# container's own root filesystem); STORAGE_DRIVER=fuse-overlayfs (with
# /dev/fuse) or vfs where it does not.
exec dockerd --storage-driver="${STORAGE_DRIVER:-overlay2}" --dns="$address" "$@"
