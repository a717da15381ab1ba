#ifndef COMPROBIFY_CLIBXML2_SHIM_H
#define COMPROBIFY_CLIBXML2_SHIM_H

/* The distribution's libxml2 is built with ICU support, so encoding.h would
   pull in the system's ICU headers, whose UErrorCode differs from the one in
   Foundation's bundled ICU: a Swift module importing both then fails to build.
   Only trailing members of xmlCharEncodingHandler depend on the macro, a
   struct this package never allocates or reads. */
#include <libxml/xmlversion.h>
#undef LIBXML_ICU_ENABLED

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <libxml/c14n.h>
#include <libxml/xmlschemas.h>
#include <libxml/xmlsave.h>

#endif
