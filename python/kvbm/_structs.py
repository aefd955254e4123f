"""C config structs filled with the defaults of their C init functions.

Each function mirrors one KVBM_<NAME>_CONFIG_DEFAULTS list of include/kvbm/
(fields it does not name are zero, as memset leaves them);
python/tests/test_cdefs.py checks the bytes against kvbm_<name>_config_init().
"""
from ._cffi import constants, ffi


def policy_config_defaults(c):
    c.struct_size = ffi.sizeof("kvbm_policy_config_t")
    c.version = constants.KVBM_POLICY_CONFIG_VERSION
    c.multi_lru_thresholds = [3, 8, 15]


def policy_config():
    c = ffi.new("kvbm_policy_config_t *")
    policy_config_defaults(c)
    return c


def manager_config():
    c = ffi.new("kvbm_manager_config_t *")
    c.struct_size = ffi.sizeof("kvbm_manager_config_t")
    c.version = constants.KVBM_MANAGER_CONFIG_VERSION
    c.duplication = constants.KVBM_DUPLICATION_REJECT
    policy_config_defaults(c.policy_config)
    return c


def layout_config_defaults(c):
    c.struct_size = ffi.sizeof("kvbm_layout_config_t")
    c.version = constants.KVBM_LAYOUT_CONFIG_VERSION
    c.kind = constants.KVBM_LAYOUT_FULLY_CONTIGUOUS
    c.outer_dim = 2
    c.elem_size = 2
    c.alignment = 256
    c.outer_contiguous = True


def layout_config():
    c = ffi.new("kvbm_layout_config_t *")
    layout_config_defaults(c)
    return c


def backend_config():
    c = ffi.new("kvbm_backend_config_t *")
    c.struct_size = ffi.sizeof("kvbm_backend_config_t")
    c.version = constants.KVBM_BACKEND_CONFIG_VERSION
    c.kind = constants.KVBM_BACKEND_AUTO
    c.kernel_threshold = 65536
    return c


def disk_config():
    c = ffi.new("kvbm_disk_config_t *")
    c.struct_size = ffi.sizeof("kvbm_disk_config_t")
    c.version = constants.KVBM_DISK_CONFIG_VERSION
    c.min_free_bytes = 1 << 30
    c.tp_size = 1
    c.direct = True
    c.queue_depth = 64
    c.io_threads = 4
    c.preallocate = True
    c.staging_blocks = 256
    return c


def cache_config():
    c = ffi.new("kvbm_cache_config_t *")
    c.struct_size = ffi.sizeof("kvbm_cache_config_t")
    c.version = constants.KVBM_CACHE_CONFIG_VERSION
    layout_config_defaults(c.layout)
    policy_config_defaults(c.policy_config)
    return c


def admission_config():
    c = ffi.new("kvbm_admission_config_t *")
    c.struct_size = ffi.sizeof("kvbm_admission_config_t")
    c.version = constants.KVBM_ADMISSION_CONFIG_VERSION
    c.keep_ratio = 0.65
    c.min_samples = 32
    return c


#: name -> (C type, function giving a default-filled struct), for the check.
ALL = {
    "policy": ("kvbm_policy_config_t", policy_config),
    "manager": ("kvbm_manager_config_t", manager_config),
    "layout": ("kvbm_layout_config_t", layout_config),
    "backend": ("kvbm_backend_config_t", backend_config),
    "disk": ("kvbm_disk_config_t", disk_config),
    "cache": ("kvbm_cache_config_t", cache_config),
    "admission": ("kvbm_admission_config_t", admission_config),
}
