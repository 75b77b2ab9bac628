#!/bin/sh
# udhcpc's event script (busybox udhcpc -s): configures the interface from the lease and
# prints one line per event for the test reading udhcpc's output.
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
    echo "LEASE $1 ip=$ip mask=$mask router=$router dns=$dns lease=$lease serverid=$serverid"
    ;;
  leasefail|nak)
    echo "LEASE $1"
    ;;
esac
exit 0
