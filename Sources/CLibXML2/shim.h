#ifndef COMPROBIFY_CLIBXML2_SHIM_H
#define COMPROBIFY_CLIBXML2_SHIM_H

#include <libxml/xmlversion.h>
/* Debian's libxml2 is built with ICU, and its encoding.h then includes ICU's
   headers, which clash with the ICU copy Foundation carries (a file importing
   both modules fails to build). Only xmlCharEncodingHandler's trailing ICU
   pointers depend on this; Swift never allocates that struct. */
#undef LIBXML_ICU_ENABLED

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <libxml/c14n.h>
#include <libxml/xmlschemas.h>
#include <libxml/xmlsave.h>

/* From libxml/xmlschemastypes.h, which is not included: it would make
   xmlSchema a complete type, and Swift would then see xmlSchemaPtr as a typed
   pointer rather than an opaque one. Later libxml2 versions return int; the
   result is not used. */
XMLPUBFUN void XMLCALL xmlSchemaInitTypes(void);

/* xmlFree is a global function pointer, which Swift 6 refuses to read as
   shared mutable state. */
static inline void comprobify_xml_free(void *pointer) {
    xmlFree(pointer);
}

#endif
