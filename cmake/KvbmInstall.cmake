# Where `cmake --install` puts kvbm, in the GNUInstallDirs layout a Debian
# user expects (prefix /usr: libraries in lib/<multiarch>):
#   lib:      libkvbm.so.MAJOR.MINOR.PATCH, its soname link libkvbm.so.MAJOR
#             and the development link libkvbm.so; libkvbm.a
#   include:  kvbm/*.h
#   lib/pkgconfig/kvbm.pc, lib/cmake/kvbm/ (config, version, targets)
#   bin:      kvbm-replay (finds libkvbm through a relative RUNPATH)
#   share/man/man1/kvbm-replay.1
#   share/doc/kvbm: README, LICENSE, NOTICE, docs/, examples/
# Components: runtime (the shared library, the tools, LICENSE and NOTICE)
# and development (everything else), e.g. `cmake --install build --component runtime`.
include(CMakePackageConfigHelpers)
include(${CMAKE_CURRENT_LIST_DIR}/KvbmLinkRequirements.cmake)

set(KVBM_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/kvbm)
set(KVBM_INSTALL_PCDIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# ------------------------------------------------------------ libraries
set(kvbm_installed_libraries "")
if(TARGET kvbm_shared)
  set_target_properties(kvbm_shared PROPERTIES EXPORT_NAME kvbm)
  list(APPEND kvbm_installed_libraries kvbm_shared)
endif()
if(NOT KVBM_LIBRARY_TYPE STREQUAL "SHARED")
  set_target_properties(kvbm_static PROPERTIES EXPORT_NAME kvbm_static)
  list(APPEND kvbm_installed_libraries kvbm_static)
endif()
install(TARGETS ${kvbm_installed_libraries} EXPORT kvbm-targets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT development
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development)
install(DIRECTORY include/kvbm DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development)

# ------------------------------------------------------------ what a static link needs
kvbm_link_requirements(kvbm_static KVBM_STATIC)

# ------------------------------------------------------------ CMake package
set(KVBM_CONFIG_STATIC_DEPS "${KVBM_STATIC_CMAKE_DEPS}")
string(REGEX REPLACE "\n([^\n])" "\n  \\1" KVBM_CONFIG_STATIC_DEPS "  ${KVBM_CONFIG_STATIC_DEPS}")
foreach(flag KVBM_WITH_CUDA KVBM_HAVE_NCCL)
  if(${flag})
    set(${flag} TRUE)
  else()
    set(${flag} FALSE)
  endif()
endforeach()
configure_package_config_file(cmake/kvbm-config.cmake.in ${PROJECT_BINARY_DIR}/kvbm-config.cmake
  INSTALL_DESTINATION ${KVBM_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/kvbm-config-version.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(EXPORT kvbm-targets NAMESPACE kvbm:: DESTINATION ${KVBM_INSTALL_CMAKEDIR}
  COMPONENT development)
install(FILES ${PROJECT_BINARY_DIR}/kvbm-config.cmake ${PROJECT_BINARY_DIR}/kvbm-config-version.cmake
  DESTINATION ${KVBM_INSTALL_CMAKEDIR} COMPONENT development)

# ------------------------------------------------------------ pkg-config
# Relocatable: every path is relative to where kvbm.pc lies.
file(RELATIVE_PATH KVBM_PC_PREFIX /prefix/${KVBM_INSTALL_PCDIR} /prefix)
string(REGEX REPLACE "/$" "" KVBM_PC_PREFIX "${KVBM_PC_PREFIX}")
foreach(dir LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${dir}}")
    set(KVBM_PC_${dir} "${CMAKE_INSTALL_${dir}}")
  else()
    set(KVBM_PC_${dir} "\${prefix}/${CMAKE_INSTALL_${dir}}")
  endif()
endforeach()
set(KVBM_PC_BACKENDS "CPU backend")
if(KVBM_WITH_CUDA)
  string(APPEND KVBM_PC_BACKENDS ", CUDA backend")
endif()
if(KVBM_HAVE_NCCL)
  string(APPEND KVBM_PC_BACKENDS ", NCCL transport")
endif()
# With the shared library, `pkg-config --libs kvbm` is -lkvbm alone and
# --static adds the rest; a static-only install needs the rest either way.
# libzmq by its linker flag, not as a module: Debian's libzmq.pc answers
# --static with `libprotokit.a` (a bare file name from libnorm that no linker
# finds), so any `pkg-config --static` through it fails to link.
if("libzmq" IN_LIST KVBM_STATIC_PC_REQUIRES)
  list(REMOVE_ITEM KVBM_STATIC_PC_REQUIRES libzmq)
  list(APPEND KVBM_STATIC_PC_LIBS -lzmq)
endif()
string(JOIN ", " KVBM_PC_REQUIRES ${KVBM_STATIC_PC_REQUIRES})
string(JOIN " " kvbm_static_libs ${KVBM_STATIC_PC_LIBS})
if(kvbm_static_libs)
  string(PREPEND kvbm_static_libs " ")
endif()
if(TARGET kvbm_shared)
  set(KVBM_PC_REQUIRES_FIELD "Requires.private")
  set(KVBM_PC_LIBS_PUBLIC "")
  set(KVBM_PC_LIBS_PRIVATE "${kvbm_static_libs}")
else()
  set(KVBM_PC_REQUIRES_FIELD "Requires")
  set(KVBM_PC_LIBS_PUBLIC "${kvbm_static_libs}")
  set(KVBM_PC_LIBS_PRIVATE "")
endif()
configure_file(kvbm.pc.in kvbm.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/kvbm.pc DESTINATION ${KVBM_INSTALL_PCDIR} COMPONENT development)

# ------------------------------------------------------------ documentation
# The licence and the notice go with the runtime too: whoever installs only
# the library and the tools gets them.
install(FILES LICENSE NOTICE DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT development)
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs COMPONENT development)
install(DIRECTORY examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples COMPONENT development)
