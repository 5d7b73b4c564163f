# Defaults for the trove-guest element. Each value may be overridden by
# exporting it before the build starts.

# Account the guest agent runs as.
export GUEST_USERNAME=${GUEST_USERNAME:-trove}

# Directory the guest agent writes its log files to.
export GUEST_LOGDIR=${GUEST_LOGDIR:-/var/log/trove}

# Comma separated cloud-init datasources, tried in order ("None" is
# always appended as the last resort).
export DIB_CLOUD_INIT_DATASOURCES=${DIB_CLOUD_INIT_DATASOURCES:-ConfigDrive}
