# Couchbase Server comes from its vendor's repository (see vendor-datastore).
export VENDOR_PACKAGES="couchbase-server"
export VENDOR_UNIT=couchbase-server.service
