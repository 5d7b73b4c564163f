# package-installs refuses a `when:` on an unset variable; DIB's bootloader
# hook reads an unset DIB_BLOCK_DEVICE as empty (no block-device element).
export DIB_BLOCK_DEVICE=${DIB_BLOCK_DEVICE:-}
