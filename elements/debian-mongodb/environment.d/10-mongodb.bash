# MongoDB comes from its vendor's repository (see vendor-datastore).
export VENDOR_PACKAGES="mongodb-org"
export VENDOR_UNIT=mongod.service
