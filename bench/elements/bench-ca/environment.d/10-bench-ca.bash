# Only where the bundle is (in the chroot, after extra-data.d).
if [ -f /tmp/in_target.d/bench-ca.pem ]; then
    export PIP_CERT=/tmp/in_target.d/bench-ca.pem
    export REQUESTS_CA_BUNDLE=/tmp/in_target.d/bench-ca.pem
fi
