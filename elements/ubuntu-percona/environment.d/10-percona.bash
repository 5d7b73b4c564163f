# Percona Server for MySQL comes from its vendor's repository (see vendor-datastore).
export VENDOR_PACKAGES="percona-server-server"
export VENDOR_UNIT=mysql.service
