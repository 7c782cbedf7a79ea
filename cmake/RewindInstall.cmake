# `cmake --install` writes the library, its headers and a package config, so an outside project
# does find_package(rewind) and links rewind::rewind. Headers keep the tree's layout under
# include/rewind/ (core/, core/ops/, autograd/, backends/, nn/, models/), which is on the include
# path of rewind::rewind, so "core/ops.h" resolves as it does in the tree.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(REWIND_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/rewind)

install(TARGETS rewind EXPORT rewindTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(dir core autograd backends nn models)
  install(DIRECTORY ${dir}/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/rewind/${dir}
    FILES_MATCHING PATTERN "*.h" PATTERN "*.cuh")
endforeach()
install(EXPORT rewindTargets NAMESPACE rewind:: DESTINATION ${REWIND_INSTALL_CMAKEDIR})
configure_package_config_file(cmake/rewindConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/rewindConfig.cmake
  INSTALL_DESTINATION ${REWIND_INSTALL_CMAKEDIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/rewindConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/rewindConfig.cmake
  ${CMAKE_CURRENT_BINARY_DIR}/rewindConfigVersion.cmake
  DESTINATION ${REWIND_INSTALL_CMAKEDIR})
