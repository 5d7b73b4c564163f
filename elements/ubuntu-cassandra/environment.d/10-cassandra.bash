# Apache Cassandra comes from its vendor's repository (see vendor-datastore).
export VENDOR_PACKAGES="cassandra"
export VENDOR_UNIT=cassandra.service
